import numpy as np
import pytest

from app.gallery.index import EmbeddingIndex


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
    assert np.allclose(index.vectors("a"), [unit(90)])
    assert index.search(unit(90), 1)[0].name == "new name"


def test_remove_keeps_the_other_rows_right():
    index = EmbeddingIndex(4)
    for i in range(5):
        index.upsert(f"e{i}", None, unit(30 * i))
    assert index.remove("e1") and not index.remove("e1")
    assert "e1" not in index and len(index) == 4
    for i in (0, 2, 3, 4):
        assert index.search(unit(30 * i), 1)[0].employee_id == f"e{i}"
        assert np.allclose(index.vectors(f"e{i}"), [unit(30 * i)])


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
    assert len(index) == 100 and index.nbytes == vectors.nbytes
    assert index.search(unit(42 * 3.6), 1)[0].employee_id == "e42"
    index.upsert("new", "New", unit(1))
    assert index.nbytes == 126 * 4 * 4  # 100 * 1.25 + 1 rows
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
        assert np.array_equal(index.vectors(employee_id), [vector]), employee_id
        assert np.array_equal(index._matrix[index._ids.find(employee_id)].numpy(), vector)
    assert index.vectors("b") is None
    index.upsert("c", None, vectors[:3])  # several references: every row's host copy too
    index.remove("a")
    assert np.array_equal(index.vectors("c"), vectors[:3])
    for key, vector in zip(index._ids.ids_of(list(range(len(index)))), index._host[:len(index)], strict=True):
        assert np.array_equal(index._matrix[index._ids.find(key)].numpy(), vector), key


def test_an_employee_with_several_references_is_found_by_the_nearest_once():
    index = EmbeddingIndex(4, capacity=2)
    index.upsert("a", "A", np.stack([unit(0), unit(100), unit(200)]))
    index.upsert("b", "B", unit(90))
    index.upsert("c", None, unit(180))
    assert len(index) == 5 and index.employees == 3 and "a" in index
    # a's 100-degree reference is nearer to 95 than b is; a is listed once, at that distance
    matches = index.search(unit(95), k=3)
    assert [m.employee_id for m in matches] == ["a", "b", "c"]
    assert matches[0].distance == pytest.approx(2 * np.sin(np.radians(5) / 2), abs=1e-5)
    assert matches[0].name == "A"
    # k employees, even when one employee's references fill the nearest rows
    close = EmbeddingIndex(4)
    close.upsert("a", None, np.stack([unit(0), unit(10), unit(20)]))
    close.upsert("b", None, unit(90))
    assert [m.employee_id for m in close.search(unit(5), k=2)] == ["a", "b"]
    assert np.allclose(index.vectors("a"), [unit(0), unit(100), unit(200)])
    # fewer references: the extra rows go; none left behind for search
    index.upsert("a", "A", unit(0))
    assert len(index) == 3 and index.employees == 3
    assert [m.employee_id for m in index.search(unit(100), k=3)] == ["b", "c", "a"]
    assert index.remove("a") and "a" not in index and len(index) == 2 and index.vectors("a") is None


def test_a_bulk_load_gives_an_id_listed_twice_two_references():
    index = EmbeddingIndex(4)
    index.load(["a", "b", "a"], ["A", "B", "A"], np.stack([unit(0), unit(90), unit(180)]))
    assert len(index) == 3 and index.employees == 2
    assert np.allclose(index.vectors("a"), [unit(0), unit(180)])
    assert index.search(unit(170), 1)[0].employee_id == "a"
    index.upsert("a", "A", unit(45))  # replaced by one: both old rows go
    assert len(index) == 2 and np.allclose(index.vectors("a"), [unit(45)])
