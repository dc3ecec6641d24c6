from collections import Counter

import numpy as np
import pytest

from model.training.sampler import PKSampler

LABELS = ["a"] * 5 + ["b"] * 2 + ["c"] * 3 + ["d"] * 1 + [""] * 4 + ["e"] * 6 + ["f"] * 2


def test_every_batch_has_p_identities_with_k_photos_each():
    sampler = PKSampler(LABELS, p=2, k=3, seed=1)
    for batch in sampler.epoch():
        assert len(batch) == 6
        counts = Counter(LABELS[i] for i in batch)
        assert len(counts) == 2 and set(counts.values()) == {3}


def test_identities_with_one_photo_or_no_label_never_appear():
    sampler = PKSampler(LABELS, p=2, k=2, seed=0)
    seen = {LABELS[i] for _ in range(20) for i in next(iter(sampler))}
    assert seen <= {"a", "b", "c", "e", "f"}


def test_an_epoch_visits_each_eligible_identity_once():
    sampler = PKSampler(LABELS, p=2, k=2, seed=3)
    identities = [LABELS[batch[0]] for batch in sampler.epoch() for batch in [batch[::2]]]
    per_epoch = [LABELS[i] for batch in sampler.epoch() for i in batch[::2]]
    assert len(sampler) == 2 and len(per_epoch) == 4 and len(set(per_epoch)) == 4
    assert identities


def test_photos_are_distinct_when_the_identity_has_enough():
    sampler = PKSampler(LABELS, p=2, k=2, seed=5)
    for batch in sampler.epoch():
        for label in {LABELS[i] for i in batch}:
            members = [i for i in batch if LABELS[i] == label]
            assert len(set(members)) == len(members)


def test_the_same_seed_gives_the_same_batches():
    first = list(PKSampler(LABELS, p=2, k=2, seed=7).epoch())
    second = list(PKSampler(LABELS, p=2, k=2, seed=7).epoch())
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_too_few_identities_is_refused():
    with pytest.raises(ValueError):
        PKSampler(["a", "a", "b"], p=2, k=2)
