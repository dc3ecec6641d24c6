"""The in-memory search index: one contiguous matrix of unit vectors on the embedder's device.

Identify is a matrix-vector product and a top-k, with no Python loop over templates. Rows are removed by
moving the last row into the hole, so the matrix stays dense. A start-up load sizes it exactly; after that
it grows by a quarter at a time, so its slack never passes 25 % of the vectors' bytes. The ids live in
numpy arrays too (app.gallery.ids), not as a Python object per template.

An employee may have several references (several rows). Their first row is keyed by the employee id, the others
by "id#1", "id#2"... ("#" is never in an id), and only employees with more than one have an entry in a dict: a
gallery of one reference each costs what it did. Search takes enough rows to find k distinct employees and
keeps each one's nearest.

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
SEPARATOR = "#"  # never in an employee id (app.core.identifiers.EMPLOYEE_ID_PATTERN)


def _row_key(employee_id: str, reference: int) -> str:
    return employee_id if reference == 0 else f"{employee_id}{SEPARATOR}{reference}"


def _employee_of(key: str) -> str:
    return key.split(SEPARATOR, 1)[0]


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
        self._extra: dict[str, int] = {}  # employee id -> rows beyond the first, for those with several
        self._lock = threading.RLock()

    def __len__(self) -> int:
        """Rows: the templates a probe is compared with."""
        return self._ids.size

    @property
    def employees(self) -> int:
        with self._lock:
            return self._ids.size - sum(self._extra.values())

    def __contains__(self, employee_id: str) -> bool:
        with self._lock:
            return self._ids.find(_row_key(employee_id, 0)) is not None

    @property
    def nbytes(self) -> int:
        """Bytes held by the matrix, slack included."""
        return self._matrix.numel() * self._matrix.element_size()

    def load(self, ids: list[str], names: list[str | None], vectors: np.ndarray) -> None:
        """Replace the whole contents at once (start-up): one exactly sized matrix, no per-row work. An id given
        more than once has that many references."""
        if vectors.shape != (len(ids), self.dim) or len(names) != len(ids):
            raise ValueError(f"expected {len(ids)} names and vectors of shape ({len(ids)}, {self.dim}), got "
                             f"{len(names)} and {vectors.shape}")
        seen: dict[str, int] = {}
        keys = []
        for employee_id in ids:
            keys.append(_row_key(employee_id, seen.get(employee_id, 0)))
            seen[employee_id] = seen.get(employee_id, 0) + 1
        matrix = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(self.device)
        with self._lock:
            self._matrix = matrix if len(ids) else self._matrix[:0]
            if self._host is not None:
                self._host = np.array(vectors, dtype=np.float32)
            self._ids = IdTable()
            self._ids.load(keys)
            self._names = {i: name for i, name in zip(ids, names, strict=True) if name is not None}
            self._extra = {i: n - 1 for i, n in seen.items() if n > 1}

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

    def upsert(self, employee_id: str, name: str | None, vectors: np.ndarray) -> None:
        """Make `vectors` (one, or one per reference) the employee's rows."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or not len(vectors):
            raise ValueError(f"expected vectors of dimension {self.dim}, got shape {vectors.shape}")
        rows_vectors = torch.from_numpy(np.ascontiguousarray(vectors)).to(self.device)
        with self._lock:
            self._drop(employee_id)
            self._ensure_capacity(len(self) + len(vectors))
            for reference, vector in enumerate(vectors):
                row = self._ids.append(_row_key(employee_id, reference))
                self._matrix[row] = rows_vectors[reference]
                if self._host is not None:
                    self._host[row] = vector
            if len(vectors) > 1:
                self._extra[employee_id] = len(vectors) - 1
            if name is None:
                self._names.pop(employee_id, None)
            else:
                self._names[employee_id] = name

    def remove(self, employee_id: str) -> bool:
        with self._lock:
            if not self._drop(employee_id):
                return False
            self._names.pop(employee_id, None)
            return True

    def _drop(self, employee_id: str) -> bool:
        """Remove the employee's rows, each by moving the last row into its place."""
        found = False
        for reference in range(1 + self._extra.pop(employee_id, 0)):
            row = self._ids.find(_row_key(employee_id, reference))
            if row is None:
                continue
            found = True
            moved = self._ids.remove(row)
            if moved is not None:
                self._matrix[row] = self._matrix[moved]
                if self._host is not None:
                    self._host[row] = self._host[moved]
        return found

    def vectors(self, employee_id: str) -> np.ndarray | None:
        """The employee's reference vectors, one row each, or None if they have none here."""
        with self._lock:
            rows = [self._ids.find(_row_key(employee_id, r)) for r in range(1 + self._extra.get(employee_id, 0))]
            if rows[0] is None:
                return None
            return (self._host[rows] if self._host is not None else self._matrix[rows].numpy()).copy()

    def search(self, query: np.ndarray, k: int) -> list[Match]:
        """The k nearest employees, nearest first, each at the distance of their nearest reference."""
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
            # k employees lie among the k * (most references anyone has) nearest rows
            top = torch.topk(similarity, min(k * (1 + max(self._extra.values(), default=0)), n))
            keys = self._ids.ids_of(top.indices.cpu().tolist())
            # Unit vectors: |a - b| = sqrt(2 - 2 a.b).
            distances = torch.sqrt(torch.clamp(2 - 2 * top.values, min=0)).cpu().tolist()
            matches: dict[str, Match] = {}
            for key, distance in zip(keys, distances, strict=True):
                employee_id = _employee_of(key)
                if employee_id not in matches:  # the nearest of their rows comes first
                    matches[employee_id] = Match(employee_id, self._names.get(employee_id), distance)
            return list(matches.values())[:k]
