"""The evaluate CLI on a generic pairs file, through the service's pipeline and the shipped model."""

import itertools
import json

import pytest

from model.datasets.sources import read_generic_pairs, read_lfw_pairs
from model.evaluation.evaluate import main


@pytest.fixture
def pairs_file(testfaces, tmp_path):
    people = sorted(p.name for p in (testfaces / "lfw").iterdir())
    lines = []
    for person in people:  # 3 same-person pairs each
        for a, b in itertools.combinations(range(1, 4), 2):
            lines.append(f"{person}/{person}_{a:04d}.jpg\t{person}/{person}_{b:04d}.jpg\t1")
    for first, second in itertools.combinations(people, 2):  # 45 different-person pairs
        lines.append(f"{first}/{first}_0001.jpg\t{second}/{second}_0002.jpg\t0")
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_evaluate_prints_the_protocol_figures_as_json_and_plots(testfaces, pairs_file, cache, capsys, tmp_path):
    plot = tmp_path / "roc.png"
    main(["pairs", "--data", str(testfaces / "lfw"), "--pairs", str(pairs_file), "--json", "--device", "cpu",
          "--cache", str(cache), "--plot", str(plot)])
    result = json.loads(capsys.readouterr().out)
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert {"accuracy", "accuracy_std", "eer", "tar_at_far", "auc", "no_face", "model_id"} <= set(result)
    assert set(result["tar_at_far"]) == {"0.01", "0.001"}
    assert result["no_face"] == 0 and result["pairs"] == 75
    # A floor that a broken pipeline (chance: AUC 0.5) cannot reach; the model's quality is judged on LFW.
    assert result["auc"] > 0.8 and result["accuracy"] > 0.7


def test_generic_pairs_are_read_and_dealt_into_folds(pairs_file):
    pairs = read_generic_pairs(pairs_file)
    assert len(pairs) == 75 and sum(p.same for p in pairs) == 30
    assert {p.fold for p in pairs} == set(range(10))


def test_the_lfw_pairs_file_is_read_per_the_view2_layout(tmp_path):
    text = "2 1\nA\t1\t2\nA\t1\tB\t3\nC\t2\t4\nC\t1\tD\t1\n"
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    pairs = read_lfw_pairs(path)
    assert [(p.a, p.b, p.same, p.fold) for p in pairs] == [
        ("A/A_0001.jpg", "A/A_0002.jpg", True, 0), ("A/A_0001.jpg", "B/B_0003.jpg", False, 0),
        ("C/C_0002.jpg", "C/C_0004.jpg", True, 1), ("C/C_0001.jpg", "D/D_0001.jpg", False, 1)]


def test_bad_arguments_fail_before_any_work(testfaces, pairs_file, tmp_path, capsys, monkeypatch):
    """A plot that cannot be written, or a missing input, is refused when the arguments are parsed."""
    import model.evaluation.evaluate as evaluate

    def never(*args, **kwargs):  # noqa: ANN002, ANN003
        raise AssertionError("the evaluation started")

    monkeypatch.setattr(evaluate, "evaluate", never)
    base = ["pairs", "--data", str(testfaces / "lfw"), "--pairs", str(pairs_file)]
    with pytest.raises(SystemExit):
        main([*base, "--plot", str(tmp_path / "no-such-folder" / "roc.png")])
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["pairs", "--data", str(tmp_path / "missing"), "--pairs", str(pairs_file)])
    monkeypatch.setattr(evaluate.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SystemExit):
        main([*base, "--plot", str(tmp_path / "roc.png")])
    assert "needs matplotlib" in capsys.readouterr().err
