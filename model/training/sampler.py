"""P x K batches: P distinct identities, K photos of each, so that every batch holds positives to mine."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np


class PKSampler:
    """Yields index arrays of length P*K, grouped identity by identity.

    Only identities with at least two photos take part (a lone photo has no positive). An identity with
    fewer than K photos repeats some of them; augmentation makes the repeats differ. Each epoch visits every
    eligible identity once, in a fresh order, and drops the last incomplete group of identities. Its whole
    state (random generator, the epoch's order, the position in it) is `state_dict()`, so that a resumed
    training run draws exactly the batches an uninterrupted one would have.
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
        self._order: list[int] = []  # the current epoch's identities, and the next one to draw
        self._position = 0

    def __len__(self) -> int:
        return len(self.groups) // self.p

    def _take(self, members: np.ndarray) -> np.ndarray:
        if len(members) >= self.k:
            return self.rng.choice(members, self.k, replace=False)
        extra = self.rng.choice(members, self.k - len(members), replace=True)
        return self.rng.permutation(np.concatenate([members, extra]))

    def __next__(self) -> np.ndarray:
        if self._position + self.p > len(self) * self.p or not self._order:
            self._order, self._position = self.rng.permutation(len(self.groups)).tolist(), 0
        chosen = self._order[self._position:self._position + self.p]
        self._position += self.p
        return np.concatenate([self._take(self.groups[g]) for g in chosen])

    def __iter__(self) -> Iterator[np.ndarray]:
        """Endless: epoch after epoch."""
        return self

    def epoch(self) -> Iterator[np.ndarray]:
        """The batches of one fresh epoch."""
        self._order = []
        for _ in range(len(self)):
            yield next(self)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "order": list(self._order), "position": self._position}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self._order, self._position = list(state["order"]), int(state["position"])
