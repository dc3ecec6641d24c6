"""The id table against a plain dict, through a long random run of appends and removals."""

import numpy as np

from app.gallery.ids import IdTable


def test_the_id_table_agrees_with_a_dict_through_random_changes():
    rng = np.random.default_rng(0)
    table, rows = IdTable(), {}
    table.load([f"e{i}" for i in range(50)])
    rows.update({f"e{i}": i for i in range(50)})
    for step in range(3000):
        if rng.random() < 0.55:
            employee_id = f"{'x' * int(rng.integers(0, 40))}-{step}"  # ids of growing width
            rows[employee_id] = table.append(employee_id)
        elif rows:
            employee_id = list(rows)[int(rng.integers(0, len(rows)))]
            row = rows.pop(employee_id)
            moved = table.remove(row)
            if moved is not None:
                moved_id = next(k for k, v in rows.items() if v == moved)
                rows[moved_id] = row
        assert table.size == len(rows)
    for employee_id, row in rows.items():
        assert table.find(employee_id) == row and table.ids_of([row]) == [employee_id]
    assert table.find("nobody") is None and table.find("e") is None
    assert sorted(table.ids_of(list(range(table.size)))) == sorted(rows)


def test_an_empty_table_finds_nothing():
    table = IdTable()
    table.load([])
    assert table.size == 0 and table.find("a") is None
    assert table.append("a") == 0 and table.find("a") == 0


def test_many_ids_are_found_at_once_as_one_by_one():
    table = IdTable()
    table.load([f"e{i}" for i in range(100)])
    table.append("a-much-longer-id-than-the-others")
    table.remove(table.find("e5"))
    wanted = ["e1", "e5", "e99", "nobody", "a-much-longer-id-than-the-others", "e1" + "x" * 80, "e"]
    rows = table.find_many(wanted)
    assert sorted(rows.tolist()) == sorted(r for w in wanted if (r := table.find(w)) is not None)
    assert len(rows) == 3
    assert IdTable().find_many(["e1"]).tolist() == [] and table.find_many([]).tolist() == []
