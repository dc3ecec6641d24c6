import numpy as np
import pytest

from app.gallery.index import EmbeddingIndex, normalised_on_device
from model.card.scores import Cohort, as_norm, fuse


def unit(degrees: float, dim: int = 4) -> np.ndarray:
    v = np.zeros(dim, np.float32)
    v[0], v[1] = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return v


def test_search_returns_the_nearest_first_with_euclidean_distances():
    index = EmbeddingIndex(4, capacity=2)
    for name, angle in [("a", 0), ("b", 60), ("c", 180)]:
        index.upsert(name, name.upper(), unit(angle))
    matches = index.search(unit(10), k=5)
    assert [m.employee_id for m in matches] == ["a", "b", "c"]
    assert matches[0].distance == pytest.approx(2 * np.sin(np.radians(10) / 2), abs=1e-5)
    assert matches[2].distance == pytest.approx(2 * np.sin(np.radians(170) / 2), abs=1e-5)
    assert matches[0].name == "A"


def test_upsert_replaces_in_place():
    index = EmbeddingIndex(4)
    index.upsert("a", None, unit(0))
    index.upsert("a", "new name", unit(90))
    assert len(index) == 1
    assert np.allclose(index.template("a").vector, unit(90))
    assert index.search(unit(90), 1)[0].name == "new name"


def test_remove_keeps_the_other_rows_right():
    index = EmbeddingIndex(4)
    for i in range(5):
        index.upsert(f"e{i}", None, unit(30 * i))
    assert index.remove("e1") and not index.remove("e1")
    assert "e1" not in index and len(index) == 4
    for i in (0, 2, 3, 4):
        assert index.search(unit(30 * i), 1)[0].employee_id == f"e{i}"
        assert np.allclose(index.template(f"e{i}").vector, unit(30 * i))


def test_growing_past_capacity_keeps_every_vector():
    index = EmbeddingIndex(4, capacity=1)
    for i in range(100):
        index.upsert(f"e{i}", None, unit(i * 3.6))
    assert len(index) == 100
    assert index.search(unit(50 * 3.6), 1)[0].employee_id == "e50"


def test_wrong_dimension_is_refused_and_empty_search_is_empty():
    index = EmbeddingIndex(4)
    with pytest.raises(ValueError):
        index.upsert("a", None, np.zeros(3, np.float32))
    assert index.search(unit(0), 3) == []


def test_a_bulk_load_is_exactly_sized_and_searchable_then_grows_by_a_quarter():
    vectors = np.stack([unit(i * 3.6) for i in range(100)])
    index = EmbeddingIndex(4)
    index.load([f"e{i}" for i in range(100)], [None] * 100, vectors)
    assert len(index) == 100 and index._matrix.shape == (100, 4)
    assert index.search(unit(42 * 3.6), 1)[0].employee_id == "e42"
    index.upsert("new", "New", unit(1))
    assert index._matrix.shape == (126, 4)  # 100 * 1.25 + 1 rows
    assert index.remove("e0") and index.search(unit(0), 1)[0].employee_id == "new"
    with pytest.raises(ValueError):
        index.load(["a", "b"], [None], vectors[:2])


def test_the_host_copy_of_a_gpu_index_follows_every_change():
    """On a GPU, /verify reads rows from a host copy; after loads, upserts, removals and growth it must hold
    what the device matrix holds."""
    rng = np.random.default_rng(1)
    index = EmbeddingIndex(8, capacity=2, host_copy=True)
    vectors = rng.normal(size=(5, 8)).astype(np.float32)
    index.load(["a", "b"], [None, None], vectors[:2])
    for i, name in enumerate("cde", start=2):  # grows past the loaded size
        index.upsert(name, None, vectors[i])
    index.upsert("a", None, vectors[4])
    index.remove("b")  # "e" moves into b's row
    expected = {"a": vectors[4], "c": vectors[2], "d": vectors[3], "e": vectors[4]}
    for employee_id, vector in expected.items():
        assert np.array_equal(index.template(employee_id).vector, vector), employee_id
        assert np.array_equal(index._matrix[index._ids.find(employee_id)].numpy(), vector)
    assert index.template("b") is None
    index.upsert("c", None, vectors[:3])  # several references: the fused row's host copy too
    index.remove("a")
    assert np.allclose(index.template("c").vector, fuse(vectors[:3]))
    for key, vector in zip(index._ids.ids_of(list(range(len(index)))), index._host[:len(index)], strict=True):
        assert np.array_equal(index._matrix[index._ids.find(key)].numpy(), vector), key


def test_an_employee_with_several_references_has_one_fused_template():
    index = EmbeddingIndex(4, capacity=2)
    index.upsert("a", "A", np.stack([unit(0), unit(20), unit(40)]))
    index.upsert("b", "B", unit(90))
    index.upsert("c", None, unit(180))
    assert len(index) == 3 and "a" in index  # N counts employees, not references
    template = index.template("a")
    assert template.references == 3 and np.allclose(template.vector, unit(20), atol=1e-6)
    matches = index.search(unit(25), k=3)
    assert [m.employee_id for m in matches] == ["a", "b", "c"]
    assert matches[0].distance == pytest.approx(2 * np.sin(np.radians(5) / 2), abs=1e-5)
    assert (matches[0].name, matches[0].references, matches[1].references) == ("A", 3, 1)
    # a reference removed: the template is fused again from what is left
    index.upsert("a", "A", np.stack([unit(0), unit(40)]))
    assert index.template("a").references == 2 and np.allclose(index.template("a").vector, unit(20), atol=1e-6)
    index.upsert("a", "A", unit(0))
    assert len(index) == 3 and index.template("a").references == 1
    assert index.remove("a") and "a" not in index and len(index) == 2 and index.template("a") is None


def test_a_bulk_load_fuses_an_id_listed_twice():
    index = EmbeddingIndex(4)
    index.load(["a", "b", "a"], ["A", "B", "A"], np.stack([unit(0), unit(90), unit(60)]))
    assert len(index) == 2
    assert index.template("a").references == 2 and np.allclose(index.template("a").vector, unit(30), atol=1e-6)
    assert index.search(unit(30), 1)[0].employee_id == "a"
    index.upsert("a", "A", unit(45))  # replaced by one
    assert len(index) == 2 and np.allclose(index.template("a").vector, unit(45))


def test_references_that_cancel_out_are_refused():
    with pytest.raises(ValueError):
        fuse(np.stack([unit(0), unit(180)]))


def test_cohort_statistics_equal_a_hand_computation():
    """Three cohort vectors, K = 2: a vector's two highest cosines, their mean and (population) deviation."""
    cohort = Cohort(np.stack([unit(0), unit(90), unit(180)]), k=2)
    mean, sd = cohort.stats(unit(60)[None])
    top = [np.cos(np.radians(30)), np.cos(np.radians(60))]  # against 90 and 0 degrees; 180 is not in the top 2
    assert mean[0] == pytest.approx(np.mean(top), abs=1e-6)
    assert sd[0] == pytest.approx(np.std(top), abs=1e-6)
    # AS-norm: the average of the score z-normalised by the template's and by the probe's statistics
    assert as_norm(0.5, 0.2, 0.1, 0.4, 0.05) == pytest.approx(((0.5 - 0.2) / 0.1 + (0.5 - 0.4) / 0.05) / 2)


def test_with_a_cohort_search_ranks_by_the_normalised_score():
    """A template that looks like many cohort faces loses to one that looks like none at the same cosine."""
    rng = np.random.default_rng(3)
    dim = 16
    crowd = rng.normal(size=dim)
    crowd /= np.linalg.norm(crowd)
    cohort_vectors = crowd + 0.3 * rng.normal(size=(200, dim))  # faces around "crowd"
    cohort_vectors /= np.linalg.norm(cohort_vectors, axis=1, keepdims=True)
    cohort = Cohort(cohort_vectors.astype(np.float32), k=10)
    vectors = rng.normal(size=(50, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[0] = (crowd + 0.2 * rng.normal(size=dim)) / np.linalg.norm(crowd + 0.2 * rng.normal(size=dim))
    index = EmbeddingIndex(dim, cohort=cohort)
    index.load([f"e{i}" for i in range(40)], [None] * 40, vectors[:40])
    for i in range(40, 50):
        index.upsert(f"e{i}", None, vectors[i])
    index.remove("e3")  # a row moves: its statistics with it
    probe = vectors[7] * 0.6 + vectors[0] * 0.4
    probe /= np.linalg.norm(probe)
    kept = [i for i in range(50) if i != 3]
    t_mean, t_sd = cohort.stats(vectors[kept])
    p_mean, p_sd = cohort.stats(probe[None])
    expected = as_norm(vectors[kept] @ probe, t_mean, t_sd, p_mean[0], p_sd[0])
    order = np.argsort(-expected)[:5]
    matches = index.search(probe, 5)
    assert [m.employee_id for m in matches] == [f"e{kept[i]}" for i in order]
    assert [m.score for m in matches] == pytest.approx(expected[order].tolist(), abs=1e-4)
    assert matches[0].distance == pytest.approx(float(np.linalg.norm(vectors[kept[order[0]]] - probe)), abs=1e-5)
    template = index.template("e7")
    assert (template.cohort_mean, template.cohort_sd) == pytest.approx((t_mean[kept.index(7)], t_sd[kept.index(7)]),
                                                                      abs=1e-5)


def test_the_device_search_normalises_as_the_formula_does():
    """The GPU's search computes AS-norm with torch (the CPU's with numpy); its expression, run here on CPU
    tensors, against the formula."""
    import torch

    rng = np.random.default_rng(5)
    similarity = rng.uniform(-1, 1, 50).astype(np.float32)
    mean, sd = rng.uniform(0.1, 0.4, 50).astype(np.float32), rng.uniform(0.02, 0.1, 50).astype(np.float32)
    scores = normalised_on_device(torch.from_numpy(similarity), torch.from_numpy(0.5 / sd),
                                  torch.from_numpy(0.5 * mean / sd), 0.3, 0.05)
    assert scores.numpy() == pytest.approx(as_norm(similarity, mean, sd, 0.3, 0.05), rel=1e-5, abs=1e-5)


def random_units(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_a_search_within_groups_ranks_exactly_their_members():
    """Small groups (rows gathered) and large ones (all rows ranked, theirs picked), through rows that move,
    members with no template, and groups changed and dropped: the same ranking as a search of the members
    alone."""
    rng = np.random.default_rng(7)
    dim = 16
    cohort = Cohort(random_units(rng, 300, dim), k=10)
    vectors = random_units(rng, 400, dim)
    ids = [f"e{i}" for i in range(400)]
    index = EmbeddingIndex(dim, cohort=cohort)
    index.load(ids, [None] * 400, vectors)
    groups = {"door": {f"e{i}" for i in range(0, 400, 40)} | {"not-enrolled"},  # 10 rows: gathered
              "floor": {f"e{i}" for i in range(0, 400, 2)},  # 200 rows: ranked with all
              "empty": set()}
    index.load_groups(groups)
    for removed in ("e0", "e2", "e399"):  # rows move into the holes
        index.remove(removed)
    kept = {e: vectors[int(e[1:])] for e in ids if e not in ("e0", "e2", "e399")}
    probe = random_units(rng, 1, dim)[0]
    p_mean, p_sd = cohort.stats(probe[None])

    def expected(members: set[str], k: int) -> list[str]:
        present = sorted(e for e in members if e in kept)
        stack = np.stack([kept[e] for e in present])
        t_mean, t_sd = cohort.stats(stack)
        scores = as_norm(stack @ probe, t_mean, t_sd, p_mean[0], p_sd[0])
        return [present[i] for i in np.argsort(-scores)[:k]]

    for within in ({"door"}, {"floor"}, {"door", "floor"}):
        members = set().union(*(groups[g] for g in within))
        found = index.search(probe, 5, within=within)
        assert [m.employee_id for m in found] == expected(members, 5), within
        assert index.size_within(within) == len([e for e in members if e in kept])
    assert index.search(probe, 5, within={"empty"}) == [] and index.size_within({"empty"}) == 0
    assert index.search(probe, 5, within={"no such group"}) == []
    assert index.search(probe, 5, within=set()) == []

    index.set_group("door", {"e40", "e80"})
    assert {m.employee_id for m in index.search(probe, 5, within={"door"})} == {"e40", "e80"}
    index.upsert("e0", None, vectors[0])
    index.set_groups_of("e0", ["door", "no such group"])
    assert index.groups_of("e0") == {"door"} and index.is_within("e0", {"door"})
    assert index.size_within({"door"}) == 3
    index.drop_group("door")
    assert not index.has_group("door") and index.groups_of("e0") == set() and not index.is_within("e0", {"door"})
    assert index.group_sizes() == {"floor": 199, "empty": 0}, "e0's groups were set to door alone"


def test_the_device_ranking_of_a_group_equals_the_cpu_one():
    """The GPU's gather (torch) against the CPU's (numpy), both run here on CPU tensors."""
    import torch

    rng = np.random.default_rng(8)
    cohort = Cohort(random_units(rng, 100, 8), k=5)
    index = EmbeddingIndex(8, cohort=cohort)
    index.load([f"e{i}" for i in range(60)], [None] * 60, random_units(rng, 60, 8))
    probe = random_units(rng, 1, 8)[0]
    rows = np.array([3, 17, 42, 59])
    stats = index.probe_stats(probe)
    on_cpu = index._ranked_on_cpu(probe, 60, rows, stats)
    on_device = index._ranked_on_device(torch.from_numpy(probe), 60, rows, stats).numpy()
    assert on_device == pytest.approx(on_cpu, abs=1e-5)
