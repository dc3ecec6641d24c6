"""Employee ids by row and rows by id, held in numpy arrays instead of a Python object per id.

A list and a dict of a million 16-character ids cost about 150 MB of Python objects (the strings, the
dict's entries, the row numbers): 30 % on top of the 512 MB of float32 vectors they index. Here the ids
are one byte array as wide as the longest id, and look-ups go through their hashes kept sorted: 40 bytes
per id in all. A look-up is a binary search; adding or removing an id moves part of two arrays (a few
milliseconds at a million ids), which enroll and delete can afford and search never pays.
"""

from __future__ import annotations

import numpy as np

GROWTH = 1.25


def _key(employee_id: str) -> tuple[bytes, int]:
    encoded = employee_id.encode()
    return encoded, hash(encoded)  # Python's hash: salted per process, which is all an in-memory table needs


class IdTable:
    def __init__(self) -> None:
        self.size = 0
        self._ids = np.zeros(16, dtype="S8")  # row -> UTF-8 id (NUL-padded; ids never contain NUL)
        self._hashes = np.zeros(16, dtype=np.int64)  # row -> hash of the id
        self._order = np.zeros(0, dtype=np.int64)  # rows, sorted by hash
        self._sorted = np.zeros(0, dtype=np.int64)  # the hashes in that order, for binary search

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self._ids, self._hashes, self._order, self._sorted))

    def load(self, employee_ids: list[str]) -> None:
        keys = [_key(e) for e in employee_ids]
        width = max((len(k) for k, _ in keys), default=8)
        self._ids = np.array([k for k, _ in keys], dtype=f"S{max(width, 1)}")
        self._hashes = np.array([h for _, h in keys], dtype=np.int64)
        self._order = np.argsort(self._hashes, kind="stable")
        self._sorted = self._hashes[self._order]
        self.size = len(keys)

    def ids_of(self, rows: list[int]) -> list[str]:
        return [value.decode() for value in self._ids[rows]]

    def find(self, employee_id: str) -> int | None:
        encoded, hashed = _key(employee_id)
        position = self._position(hashed, lambda row: self._ids[row] == encoded)
        return None if position is None else int(self._order[position])

    def find_many(self, employee_ids: list[str]) -> np.ndarray:
        """The rows of those of `employee_ids` that are in the table (the others are left out), in one pass of
        binary searches: a group's members, thousands at a time."""
        if not employee_ids or not self.size:
            return np.zeros(0, np.int64)
        encoded = [e.encode() for e in employee_ids]
        hashes = np.fromiter((hash(e) for e in encoded), np.int64, len(encoded))
        positions = np.minimum(np.searchsorted(self._sorted, hashes, side="left"), len(self._sorted) - 1)
        rows = self._order[positions]
        width = self._ids.dtype.itemsize  # a longer id is in no row, and would compare cut short
        fits = np.fromiter((len(e) <= width for e in encoded), bool, len(encoded))
        same = self._ids[rows] == np.array(encoded, dtype=self._ids.dtype)
        found = (self._sorted[positions] == hashes) & fits & same
        # 64-bit hashes that collide put the wanted row after the first of its hash: looked up one by one
        collided = np.flatnonzero(~found & fits & (self._sorted[positions] == hashes))
        extra = [row for i in collided if (row := self.find(employee_ids[i])) is not None]
        return np.concatenate([rows[found], np.array(extra, np.int64)])

    def _position(self, hashed: int, accept) -> int | None:  # noqa: ANN001
        """Where in the sorted order the entry with this hash, for which accept(row) holds, sits."""
        position = int(np.searchsorted(self._sorted, hashed, side="left"))
        while position < len(self._sorted) and self._sorted[position] == hashed:
            if accept(int(self._order[position])):
                return position
            position += 1
        return None

    def append(self, employee_id: str) -> int:
        """Add an id that is not in the table yet; returns its row (the next one)."""
        encoded, hashed = _key(employee_id)
        if self.size == len(self._hashes):
            capacity = max(16, int(GROWTH * self.size) + 1)
            self._ids = np.resize(self._ids, capacity)
            self._hashes = np.resize(self._hashes, capacity)
        if len(encoded) > self._ids.dtype.itemsize:
            self._ids = self._ids.astype(f"S{len(encoded)}")
        row = self.size
        self._ids[row], self._hashes[row] = encoded, hashed
        position = int(np.searchsorted(self._sorted, hashed, side="right"))
        self._order = np.insert(self._order, position, row)
        self._sorted = np.insert(self._sorted, position, hashed)
        self.size += 1
        return row

    def remove(self, row: int) -> int | None:
        """Drop `row`; the last row moves into its place. Returns the row that moved (None if none did)."""
        last = self.size - 1
        position = self._position(int(self._hashes[row]), lambda r: r == row)
        self._order = np.delete(self._order, position)
        self._sorted = np.delete(self._sorted, position)
        moved = None
        if row != last:
            self._ids[row], self._hashes[row] = self._ids[last], self._hashes[last]
            self._order[self._position(int(self._hashes[row]), lambda r: r == last)] = row
            moved = last
        self.size -= 1
        return moved
