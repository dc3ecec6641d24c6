"""The in-memory search index: one contiguous matrix of unit vectors on the embedder's device.

Identify is a matrix-vector product and a top-k, with no Python loop over templates. Rows are removed by
moving the last row into the hole, so the matrix stays dense. A start-up load sizes it exactly; after that
it grows by a quarter at a time, so its slack never passes 25 % of the vectors' bytes. The ids live in
numpy arrays too (app.gallery.ids), not as a Python object per template.

On a GPU the index also keeps a host copy of the rows, for /verify: reading one row back from the device
waits for everything queued on it (the micro-batcher's forward passes), under the index's lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch

from app.gallery.ids import IdTable


@dataclass(frozen=True)
class Match:
    employee_id: str
    name: str | None
    distance: float


GROWTH = 1.25


class EmbeddingIndex:
    def __init__(self, dim: int, device: torch.device | str = "cpu", capacity: int = 1024,
                 host_copy: bool | None = None) -> None:
        """`host_copy`: keep the rows in host memory as well (default: when the device is not the CPU)."""
        self.dim = dim
        self.device = torch.device(device)
        self._matrix = torch.zeros((capacity, dim), dtype=torch.float32, device=self.device)
        host_copy = self.device.type != "cpu" if host_copy is None else host_copy
        self._host = np.zeros((capacity, dim), np.float32) if host_copy else None
        self._ids = IdTable()
        self._names: dict[str, str] = {}  # only employees who have a name
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return self._ids.size

    def __contains__(self, employee_id: str) -> bool:
        with self._lock:
            return self._ids.find(employee_id) is not None

    @property
    def nbytes(self) -> int:
        """Bytes held by the matrix, slack included."""
        return self._matrix.numel() * self._matrix.element_size()

    def load(self, ids: list[str], names: list[str | None], vectors: np.ndarray) -> None:
        """Replace the whole contents at once (start-up): one exactly sized matrix, no per-row work."""
        if vectors.shape != (len(ids), self.dim) or len(names) != len(ids):
            raise ValueError(f"expected {len(ids)} names and vectors of shape ({len(ids)}, {self.dim}), got "
                             f"{len(names)} and {vectors.shape}")
        if len(set(ids)) != len(ids):
            raise ValueError("employee ids must be unique")
        matrix = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(self.device)
        with self._lock:
            self._matrix = matrix if len(ids) else self._matrix[:0]
            if self._host is not None:
                self._host = np.array(vectors, dtype=np.float32)
            self._ids = IdTable()
            self._ids.load(ids)
            self._names = {i: name for i, name in zip(ids, names, strict=True) if name is not None}

    def _ensure_capacity(self, size: int) -> None:
        if size > self._matrix.shape[0]:
            capacity = max(size, int(GROWTH * self._matrix.shape[0]) + 1, 16)
            grown = torch.zeros((capacity, self.dim), dtype=torch.float32, device=self.device)
            grown[: len(self)] = self._matrix[: len(self)]
            self._matrix = grown
            if self._host is not None:
                host = np.zeros((capacity, self.dim), np.float32)
                host[: len(self)] = self._host[: len(self)]
                self._host = host

    def upsert(self, employee_id: str, name: str | None, vector: np.ndarray) -> None:
        if vector.shape != (self.dim,):
            raise ValueError(f"expected a vector of dimension {self.dim}, got shape {vector.shape}")
        row_vector = torch.from_numpy(np.ascontiguousarray(vector, dtype=np.float32)).to(self.device)
        with self._lock:
            row = self._ids.find(employee_id)
            if row is None:
                self._ensure_capacity(len(self) + 1)
                row = self._ids.append(employee_id)
            if name is None:
                self._names.pop(employee_id, None)
            else:
                self._names[employee_id] = name
            self._matrix[row] = row_vector
            if self._host is not None:
                self._host[row] = vector

    def remove(self, employee_id: str) -> bool:
        with self._lock:
            row = self._ids.find(employee_id)
            if row is None:
                return False
            moved = self._ids.remove(row)
            if moved is not None:
                self._matrix[row] = self._matrix[moved]
                if self._host is not None:
                    self._host[row] = self._host[moved]
            self._names.pop(employee_id, None)
            return True

    def vector(self, employee_id: str) -> np.ndarray | None:
        with self._lock:
            row = self._ids.find(employee_id)
            if row is None:
                return None
            return (self._host[row] if self._host is not None else self._matrix[row].numpy()).copy()

    def search(self, query: np.ndarray, k: int) -> list[Match]:
        """The k nearest templates, nearest first."""
        q = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32)).to(self.device)
        with self._lock:
            n = len(self)
            if n == 0:
                return []
            if self.device.type == "cpu":
                # numpy's BLAS gemv streams the matrix at about twice the speed of torch's on the CPU (32 vs
                # 64 ms at 1M x 128 on 2 cores; the memory bound is 21 ms): benchmarks/search.py
                similarity = torch.from_numpy(self._matrix[:n].numpy() @ q.numpy())
            else:
                similarity = self._matrix[:n] @ q
            top = torch.topk(similarity, min(k, n))
            ids = self._ids.ids_of(top.indices.cpu().tolist())
            # Unit vectors: |a - b| = sqrt(2 - 2 a.b).
            distances = torch.sqrt(torch.clamp(2 - 2 * top.values, min=0)).cpu().tolist()
            return [Match(i, self._names.get(i), d) for i, d in zip(ids, distances, strict=True)]
