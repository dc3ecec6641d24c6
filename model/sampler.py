"""P x K batches: P distinct identities, K photos of each, so that every batch holds positives to mine."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np


class PKSampler:
    """Yields index arrays of length P*K, grouped identity by identity.

    Only identities with at least two photos take part (a lone photo has no positive). An identity with
    fewer than K photos repeats some of them; augmentation makes the repeats differ. Each epoch visits every
    eligible identity once, in a fresh order, and drops the last incomplete group of identities.
    """

    def __init__(self, labels: Sequence[str], p: int, k: int, seed: int = 0) -> None:
        if p < 2 or k < 2:
            raise ValueError("P and K must both be at least 2")
        groups: dict[str, list[int]] = defaultdict(list)
        for index, label in enumerate(labels):
            if label:
                groups[label].append(index)
        self.groups = [np.array(v) for v in groups.values() if len(v) >= 2]
        if len(self.groups) < p:
            raise ValueError(f"need at least {p} identities with two or more photos, have {len(self.groups)}")
        self.p, self.k = p, k
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.groups) // self.p

    def _take(self, members: np.ndarray) -> np.ndarray:
        if len(members) >= self.k:
            return self.rng.choice(members, self.k, replace=False)
        extra = self.rng.choice(members, self.k - len(members), replace=True)
        return self.rng.permutation(np.concatenate([members, extra]))

    def epoch(self) -> Iterator[np.ndarray]:
        order = self.rng.permutation(len(self.groups))
        for start in range(0, len(self) * self.p, self.p):
            yield np.concatenate([self._take(self.groups[g]) for g in order[start:start + self.p]])

    def __iter__(self) -> Iterator[np.ndarray]:
        """Endless: epoch after epoch."""
        while True:
            yield from self.epoch()
