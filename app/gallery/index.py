"""The in-memory search index: one contiguous matrix of unit vectors on the embedder's device, one row per
employee.

An employee's references are fused into one template, the L2-normalised mean of their vectors
(model.card.scores.fuse), whenever they change: an enrollment, a reference added or removed, a replace, a
re-embed, a model switch, or the change feed bringing any of these from another replica (every one of them
ends in `load` or `upsert` with the employee's current references). So N, for the 1:N threshold, counts
employees, and a template's decision threshold depends on how many references made it.

With a cohort (the model's, model.card.scores.Cohort), each row also keeps its template's cohort statistics,
computed when the row is written, and search ranks by the AS-norm score; without one it ranks by cosine
similarity. Either way each match carries its distance.

Identify is a matrix-vector product, a few element-wise passes and a top-k, with no Python loop over
templates. Rows are removed by moving the last row into the hole, so the matrix stays dense. A start-up load
sizes it exactly; after that it grows by a quarter at a time, so its slack never passes 25 % of the vectors'
bytes. The ids live in numpy arrays too (app.gallery.ids), not as a Python object per template.

Groups (a door's people) are held here too: each group's members, by id. A search within groups ranks only
their rows, gathered by index (kept until rows move or members change), so a door of 50 people costs 50 dot
products, not a pass over the whole gallery.

On a GPU the index also keeps a host copy of the rows, for /verify: reading one row back from the device
waits for everything queued on it (the micro-batcher's forward passes), under the index's lock.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from app.core.memory import release_freed_memory
from app.gallery.ids import IdTable
from model.card.scores import Cohort, fuse

GROWTH = 1.25
# a search within groups gathers their rows below this share of the gallery, else ranks all and picks theirs
GATHER_SHARE = 0.25
MAX_WITHIN = 4096  # sets of groups whose rows are kept at once
STATS_CHUNK = 4096  # templates whose cohort statistics are computed at once: a 4096 x 23,000 float32 product, 377 MB


def normalised_on_device(similarity: torch.Tensor, half_inv_sd: torch.Tensor, half_mean_over_sd: torch.Tensor,
                         probe_mean: float, probe_sd: float) -> torch.Tensor:
    """AS-norm scores from cosine similarities and the rows' kept terms (0.5 / sd_t, 0.5 mu_t / sd_t), in one
    torch expression on the tensors' device: the GPU's search (the CPU's runs the same sum in numpy)."""
    return torch.addcmul(-(half_mean_over_sd + 0.5 * probe_mean / probe_sd), similarity, half_inv_sd + 0.5 / probe_sd)


@dataclass(frozen=True)
class Match:
    employee_id: str
    name: str | None
    distance: float
    references: int = 1  # how many references the template fuses
    score: float | None = None  # the AS-norm score, when the index normalises


@dataclass(frozen=True)
class Template:
    """An employee's row: the fused vector, how many references made it, and its cohort statistics (0 and 1
    without a cohort)."""

    vector: np.ndarray
    references: int
    cohort_mean: float
    cohort_sd: float


class EmbeddingIndex:
    def __init__(self, dim: int, device: torch.device | str = "cpu", capacity: int = 1024,
                 host_copy: bool | None = None, cohort: Cohort | None = None) -> None:
        """`host_copy`: keep the rows in host memory as well (default: when the device is not the CPU).
        `cohort`: normalise scores against it (AS-norm); None ranks by cosine similarity."""
        self.dim = dim
        self.device = torch.device(device)
        self.cohort = cohort
        self._matrix = torch.zeros((capacity, dim), dtype=torch.float32, device=self.device)
        host_copy = self.device.type != "cpu" if host_copy is None else host_copy
        self._host = np.zeros((capacity, dim), np.float32) if host_copy else None
        # Per row: references fused, and the AS-norm terms 0.5 / sd_t and 0.5 * mu_t / sd_t (on the device).
        self._references = np.zeros(capacity, np.int16)
        self._half_inv_sd = torch.zeros(capacity, dtype=torch.float32, device=self.device)
        self._half_mean_over_sd = torch.zeros(capacity, dtype=torch.float32, device=self.device)
        self._ids = IdTable()
        self._names: dict[str, str] = {}  # only employees who have a name
        self._lock = threading.RLock()
        self._buffer: np.ndarray | None = None  # search's scratch (_scratch)
        # group id -> its members' ids (with a row here or not), employee id -> their groups, and the rows of a
        # set of groups, kept until rows move or members change
        self._members: dict[str, set[str]] = {}
        self._groups_of: dict[str, set[str]] = {}
        self._within: dict[frozenset[str], np.ndarray] = {}
        # Held across a read of groups from the database and the change of them here (app.gallery.feed,
        # app.services.groups), so that what was read first is never applied last: a member just removed is not
        # put back by a slower reader. Searches do not take it.
        self.groups_lock = threading.Lock()

    def __len__(self) -> int:
        """Templates: one per employee."""
        return self._ids.size

    def __contains__(self, employee_id: str) -> bool:
        with self._lock:
            return self._ids.find(employee_id) is not None

    @property
    def nbytes(self) -> int:
        """Bytes held by the matrix and the per-row arrays, slack included."""
        return (self._matrix.numel() * self._matrix.element_size() + self._references.nbytes
                + 2 * self._half_inv_sd.numel() * self._half_inv_sd.element_size())

    def _stats(self, templates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(0.5 / sd, 0.5 * mean / sd) of each template's cohort scores; zeros without a cohort."""
        if self.cohort is None:
            return np.zeros(len(templates), np.float32), np.zeros(len(templates), np.float32)
        means, sds = [], []
        for start in range(0, len(templates), STATS_CHUNK):
            mean, sd = self.cohort.stats(templates[start:start + STATS_CHUNK])
            means.append(mean)
            sds.append(sd)
        mean, sd = (np.concatenate(parts) if parts else np.zeros(0, np.float32) for parts in (means, sds))
        return (0.5 / sd).astype(np.float32), (0.5 * mean / sd).astype(np.float32)

    def load(self, ids: list[str], names: list[str | None], vectors: np.ndarray) -> None:
        """Replace the whole contents at once (start-up): one exactly sized matrix. An id given more than once
        has that many references, fused into its template."""
        if vectors.shape != (len(ids), self.dim) or len(names) != len(ids):
            raise ValueError(f"expected {len(ids)} names and vectors of shape ({len(ids)}, {self.dim}), got "
                             f"{len(names)} and {vectors.shape}")
        first: dict[str, int] = {}
        several: dict[str, list[int]] = {}
        for row, employee_id in enumerate(ids):
            if employee_id not in first:
                first[employee_id] = row
            else:
                several.setdefault(employee_id, [first[employee_id]]).append(row)
        templates = np.ascontiguousarray(vectors[list(first.values())], dtype=np.float32)
        references = np.ones(len(first), np.int16)
        position = {employee_id: i for i, employee_id in enumerate(first)} if several else {}
        for employee_id, rows in several.items():
            templates[position[employee_id]] = fuse(vectors[rows])
            references[position[employee_id]] = len(rows)
        half_inv_sd, half_mean_over_sd = self._stats(templates)
        if self.cohort is not None:
            release_freed_memory()
        with self._lock:
            self._matrix = torch.from_numpy(templates).to(self.device)
            if self._host is not None:
                self._host = templates.copy()
            self._references = references
            self._half_inv_sd = torch.from_numpy(half_inv_sd).to(self.device)
            self._half_mean_over_sd = torch.from_numpy(half_mean_over_sd).to(self.device)
            self._ids = IdTable()
            self._ids.load(list(first))
            self._names = {i: name for i, name in zip(ids, names, strict=True) if name is not None}
            self._within.clear()

    def _ensure_capacity(self, size: int) -> None:
        if size <= self._matrix.shape[0]:
            return
        capacity = max(size, int(GROWTH * self._matrix.shape[0]) + 1, 16)
        n = len(self)

        def grown(old: torch.Tensor) -> torch.Tensor:
            new = torch.zeros((capacity, *old.shape[1:]), dtype=old.dtype, device=self.device)
            new[:n] = old[:n]
            return new

        self._matrix = grown(self._matrix)
        self._half_inv_sd, self._half_mean_over_sd = grown(self._half_inv_sd), grown(self._half_mean_over_sd)
        self._references = np.resize(self._references, capacity)
        if self._host is not None:
            host = np.zeros((capacity, self.dim), np.float32)
            host[:n] = self._host[:n]
            self._host = host

    def upsert(self, employee_id: str, name: str | None, vectors: np.ndarray) -> None:
        """Make the fusion of `vectors` (one, or one per reference) the employee's template."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or not len(vectors):
            raise ValueError(f"expected vectors of dimension {self.dim}, got shape {vectors.shape}")
        template = fuse(vectors) if len(vectors) > 1 else vectors[0]
        half_inv_sd, half_mean_over_sd = self._stats(template[None])
        with self._lock:
            row = self._ids.find(employee_id)
            if row is None:
                self._ensure_capacity(len(self) + 1)
                row = self._ids.append(employee_id)
                self._within.clear()
            self._matrix[row] = torch.from_numpy(template).to(self.device)
            if self._host is not None:
                self._host[row] = template
            self._references[row] = len(vectors)
            self._half_inv_sd[row], self._half_mean_over_sd[row] = float(half_inv_sd[0]), float(half_mean_over_sd[0])
            if name is None:
                self._names.pop(employee_id, None)
            else:
                self._names[employee_id] = name

    def remove(self, employee_id: str) -> bool:
        """Remove the employee's row, by moving the last row into its place."""
        with self._lock:
            row = self._ids.find(employee_id)
            if row is None:
                return False
            moved = self._ids.remove(row)
            self._within.clear()
            if moved is not None:
                for array in (self._matrix, self._half_inv_sd, self._half_mean_over_sd, self._references):
                    array[row] = array[moved]
                if self._host is not None:
                    self._host[row] = self._host[moved]
            self._names.pop(employee_id, None)
            return True

    # --- groups --------------------------------------------------------------------------------------------

    def load_groups(self, members: Mapping[str, Iterable[str]]) -> None:
        """Replace every group at once (start-up): group id -> its members' ids."""
        with self._lock:
            self._members, self._groups_of = {}, {}
            for group_id, employee_ids in members.items():
                self._set_group(group_id, employee_ids)
            self._within.clear()

    def set_group(self, group_id: str, employee_ids: Iterable[str]) -> None:
        """Make these the group's members (creating it)."""
        with self._lock:
            self._drop_group(group_id)
            self._set_group(group_id, employee_ids)
            self._within.clear()

    def drop_group(self, group_id: str) -> None:
        with self._lock:
            self._drop_group(group_id)
            self._within.clear()

    def set_groups_of(self, employee_id: str, group_ids: Iterable[str]) -> None:
        """Make these the employee's groups (of those that exist here); none for an employee deleted."""
        with self._lock:
            wanted = {g for g in group_ids if g in self._members}
            for group_id in self._groups_of.pop(employee_id, set()) - wanted:
                self._members[group_id].discard(employee_id)
            for group_id in wanted:
                self._members[group_id].add(employee_id)
            if wanted:
                self._groups_of[employee_id] = wanted
            self._within.clear()

    def _set_group(self, group_id: str, employee_ids: Iterable[str]) -> None:
        members = self._members[group_id] = set(employee_ids)
        for employee_id in members:
            self._groups_of.setdefault(employee_id, set()).add(group_id)

    def _drop_group(self, group_id: str) -> None:
        for employee_id in self._members.pop(group_id, set()):
            groups = self._groups_of.get(employee_id)
            if groups is not None:
                groups.discard(group_id)
                if not groups:
                    del self._groups_of[employee_id]

    def has_group(self, group_id: str) -> bool:
        with self._lock:
            return group_id in self._members

    def groups_of(self, employee_id: str) -> set[str]:
        with self._lock:
            return set(self._groups_of.get(employee_id, ()))

    def group_sizes(self) -> dict[str, int]:
        """Members of each group (whether or not they have a template here)."""
        with self._lock:
            return {group_id: len(members) for group_id, members in self._members.items()}

    def is_within(self, employee_id: str, group_ids: Collection[str]) -> bool:
        """Whether the employee belongs to one of the groups."""
        with self._lock:
            return not self._groups_of.get(employee_id, set()).isdisjoint(group_ids)

    def _rows_within(self, group_ids: Collection[str]) -> np.ndarray:
        """The rows of the groups' members who have a template here, ascending (under the lock)."""
        key = frozenset(group_ids)
        rows = self._within.get(key)
        if rows is None:
            members = set().union(*(self._members.get(g, ()) for g in key))
            rows = np.sort(self._ids.find_many(list(members)))
            if len(self._within) >= MAX_WITHIN:
                self._within.clear()
            self._within[key] = rows
        return rows

    def size_within(self, group_ids: Collection[str] | None) -> int:
        """The templates a search within these groups ranks (all of them for None): N of the 1:N rule."""
        with self._lock:
            return len(self) if group_ids is None else len(self._rows_within(group_ids))

    def _scratch(self, n: int) -> np.ndarray:
        """A kept buffer of n floats for search's element-wise passes (under the lock)."""
        if self._buffer is None or len(self._buffer) < n:
            self._buffer = np.empty(max(n, int(GROWTH * n)), np.float32)
        return self._buffer[:n]

    def template(self, employee_id: str) -> Template | None:
        """The employee's template, or None if they have none here."""
        with self._lock:
            row = self._ids.find(employee_id)
            if row is None:
                return None
            vector = (self._host[row] if self._host is not None else self._matrix[row].numpy()).copy()
            half_inv_sd = float(self._half_inv_sd[row])
            sd = 0.5 / half_inv_sd if half_inv_sd else 1.0
            mean = float(self._half_mean_over_sd[row]) * 2 * sd if half_inv_sd else 0.0
            return Template(vector, int(self._references[row]), mean, sd)

    def probe_stats(self, query: np.ndarray) -> tuple[float, float] | None:
        """The probe's cohort mean and standard deviation (once per request), or None without a cohort."""
        if self.cohort is None:
            return None
        mean, sd = self.cohort.stats(query[None])
        return float(mean[0]), float(sd[0])

    def search(self, query: np.ndarray, k: int, probe_stats: tuple[float, float] | None = None,
               normalise: bool = True, within: Collection[str] | None = None) -> list[Match]:
        """The k best templates, best first: by AS-norm score with a cohort (`probe_stats` from probe_stats(),
        computed here when not given), by cosine similarity without one or with `normalise` False. `within`:
        only the members of these groups (none, for groups that do not exist here)."""
        q = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32)).to(self.device)
        if not normalise:
            probe_stats = None
        elif self.cohort is not None and probe_stats is None:
            probe_stats = self.probe_stats(query)
        with self._lock:
            n = len(self)
            rows = None if within is None else self._rows_within(within)
            if n == 0 or (rows is not None and not len(rows)):
                return []
            # a small group's rows are gathered and ranked; a large one's are picked after ranking every row
            gather = rows is not None and len(rows) <= GATHER_SHARE * n
            if self.device.type == "cpu":
                ranked = torch.from_numpy(self._ranked_on_cpu(q.numpy(), n, rows if gather else None, probe_stats))
            else:
                ranked = self._ranked_on_device(q, n, rows if gather else None, probe_stats)
            if rows is not None and not gather:
                ranked = ranked[torch.from_numpy(rows).to(ranked.device)]
            top = torch.topk(ranked, min(k, len(ranked)))
            positions = top.indices.cpu().numpy()
            picked = positions if rows is None else rows[positions]
            keys = self._ids.ids_of(picked.tolist())
            # The k best rows' cosines again (k dot products), for their distances: |a - b| = sqrt(2 - 2 a.b).
            similarity = self._matrix[torch.from_numpy(picked).to(self.device)] @ q
            distances = torch.sqrt(torch.clamp(2 - 2 * similarity, min=0)).cpu().tolist()
            scores = top.values.cpu().tolist() if probe_stats is not None else [None] * len(keys)
            return [Match(key, self._names.get(key), distance, int(self._references[row]), score)
                    for key, row, distance, score in zip(keys, picked.tolist(), distances, scores, strict=True)]

    def _ranked_on_cpu(self, q: np.ndarray, n: int, rows: np.ndarray | None,
                       probe_stats: tuple[float, float] | None) -> np.ndarray:
        """The scores of every row (`rows` None) or of `rows`, in numpy. numpy's BLAS gemv streams the matrix at
        about twice the speed of torch's on the CPU (32 vs 64 ms at 1M x 128 on 2 cores; the memory bound is
        21 ms), and numpy's element-wise passes after it, in place, cost about 1 ms at 1M where torch's cost 5
        (its threads and BLAS's contend): benchmarks/search.py."""
        matrix = self._matrix[:n].numpy()
        ranked = (matrix @ q) if rows is None else (matrix[rows] @ q)
        if probe_stats is not None:
            # s' = ((s - mu_t) / sd_t + (s - mu_p) / sd_p) / 2, as s * (0.5 / sd_t + 0.5 / sd_p)
            # - (0.5 mu_t / sd_t + 0.5 mu_p / sd_p): a few passes over n floats
            mean, sd = probe_stats
            half_inv_sd, half_mean_over_sd = self._half_inv_sd[:n].numpy(), self._half_mean_over_sd[:n].numpy()
            if rows is not None:
                half_inv_sd, half_mean_over_sd = half_inv_sd[rows], half_mean_over_sd[rows]
            coefficient = np.add(half_inv_sd, np.float32(0.5 / sd), out=self._scratch(len(ranked)))
            np.multiply(ranked, coefficient, out=ranked)
            offset = np.add(half_mean_over_sd, np.float32(0.5 * mean / sd), out=coefficient)
            np.subtract(ranked, offset, out=ranked)
        return ranked

    def _ranked_on_device(self, q: torch.Tensor, n: int, rows: np.ndarray | None,
                          probe_stats: tuple[float, float] | None) -> torch.Tensor:
        """The scores of every row (`rows` None) or of `rows`, on the index's device."""
        picked = slice(0, n) if rows is None else torch.from_numpy(rows).to(self.device)
        ranked = self._matrix[picked] @ q
        if probe_stats is not None:
            ranked = normalised_on_device(ranked, self._half_inv_sd[picked], self._half_mean_over_sd[picked],
                                          *probe_stats)
        return ranked
