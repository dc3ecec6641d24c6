"""The in-memory search index: one contiguous matrix of unit vectors on the embedder's device.

Identify is a matrix-vector product and a top-k, with no Python loop over templates. Rows are removed by
moving the last row into the hole, so the matrix stays dense. A start-up load sizes it exactly; after that
it grows by a quarter at a time, so its slack never passes 25 % of the vectors' bytes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Match:
    employee_id: str
    name: str | None
    distance: float


GROWTH = 1.25


class EmbeddingIndex:
    def __init__(self, dim: int, device: torch.device | str = "cpu", capacity: int = 1024) -> None:
        self.dim = dim
        self.device = torch.device(device)
        self._matrix = torch.zeros((capacity, dim), dtype=torch.float32, device=self.device)
        self._ids: list[str] = []
        self._names: list[str | None] = []
        self._rows: dict[str, int] = {}
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, employee_id: str) -> bool:
        return employee_id in self._rows

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
            self._ids, self._names = list(ids), list(names)
            self._rows = {employee_id: row for row, employee_id in enumerate(self._ids)}

    def _ensure_capacity(self, size: int) -> None:
        if size > self._matrix.shape[0]:
            capacity = max(size, int(GROWTH * self._matrix.shape[0]) + 1, 16)
            grown = torch.zeros((capacity, self.dim), dtype=torch.float32, device=self.device)
            grown[: len(self)] = self._matrix[: len(self)]
            self._matrix = grown

    def upsert(self, employee_id: str, name: str | None, vector: np.ndarray) -> None:
        if vector.shape != (self.dim,):
            raise ValueError(f"expected a vector of dimension {self.dim}, got shape {vector.shape}")
        row_vector = torch.from_numpy(np.ascontiguousarray(vector, dtype=np.float32)).to(self.device)
        with self._lock:
            row = self._rows.get(employee_id)
            if row is None:
                row = len(self._ids)
                self._ensure_capacity(row + 1)
                self._ids.append(employee_id)
                self._names.append(name)
                self._rows[employee_id] = row
            self._names[row] = name
            self._matrix[row] = row_vector

    def remove(self, employee_id: str) -> bool:
        with self._lock:
            row = self._rows.pop(employee_id, None)
            if row is None:
                return False
            last = len(self._ids) - 1
            if row != last:
                self._matrix[row] = self._matrix[last]
                self._ids[row], self._names[row] = self._ids[last], self._names[last]
                self._rows[self._ids[row]] = row
            self._ids.pop()
            self._names.pop()
            return True

    def vector(self, employee_id: str) -> np.ndarray | None:
        with self._lock:
            row = self._rows.get(employee_id)
            return None if row is None else self._matrix[row].cpu().numpy().copy()

    def search(self, query: np.ndarray, k: int) -> list[Match]:
        """The k nearest templates, nearest first."""
        q = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32)).to(self.device)
        with self._lock:
            n = len(self._ids)
            if n == 0:
                return []
            similarity = self._matrix[:n] @ q
            top = torch.topk(similarity, min(k, n))
            ids, names = self._ids, self._names
            # Unit vectors: |a - b| = sqrt(2 - 2 a.b).
            distances = torch.sqrt(torch.clamp(2 - 2 * top.values, min=0)).cpu().tolist()
            return [Match(ids[i], names[i], d) for i, d in zip(top.indices.cpu().tolist(), distances, strict=True)]
