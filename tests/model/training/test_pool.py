"""A saved training pool reads back as the same faces, labels, descriptors and sources."""

import numpy as np
import pytest

from model.datasets.sources import aligned_crops, detect_source
from model.faces.config import PipelineConfig
from model.training.pool import TrainingData


@pytest.fixture(scope="module")
def pool(testfaces, cache) -> TrainingData:
    parts = []
    for name in ("lfw", "celeba-wild"):
        faces = detect_source(testfaces / name, cache=cache, with_teacher=False, processes=1)
        crops = aligned_crops(testfaces / name, faces, PipelineConfig(crop_size=64), cache=cache,
                              processes=1)[faces.found]
        parts.append((crops, list(faces.labels[faces.found]), np.full(len(crops), name)))
    crops = np.concatenate([p[0] for p in parts])
    teacher = np.random.default_rng(0).normal(size=(len(crops), 128)).astype(np.float32)
    return TrainingData(crops, [label for p in parts for label in p[1]], teacher, np.concatenate([p[2] for p in parts]))


def test_a_saved_pool_loads_back(pool, tmp_path):
    path = tmp_path / "pool.npz"
    pool.save(path, meta={"note": "test"})
    back = TrainingData.load(path)
    assert back.labels == pool.labels
    assert np.array_equal(back.sources, pool.sources)
    assert back.crops.shape == pool.crops.shape and back.crops.dtype == np.uint8
    # WebP at quality 90: close to the crops, not equal to them
    error = np.abs(back.crops.astype(float) - pool.crops).mean()
    assert 0 < error < 4
    assert np.allclose(back.teacher, pool.teacher, atol=2e-3)  # float16


def test_select_keeps_only_the_named_sources(pool):
    lfw = pool.select(("lfw",))
    assert len(lfw) == int((pool.sources == "lfw").sum()) > 0
    assert set(lfw.sources) == {"lfw"}
    assert np.array_equal(lfw.crops, pool.crops[pool.sources == "lfw"])
    with pytest.raises(ValueError, match="utkface"):
        pool.select(("lfw", "utkface.tar"))


def test_a_pool_keeps_every_labelled_face_and_a_chosen_number_of_unlabelled_ones(pool):
    unlabelled = TrainingData(pool.crops, ["" if source == "celeba-wild" else label
                                           for label, source in zip(pool.labels, pool.sources, strict=True)],
                              pool.teacher, pool.sources)
    labelled = sum(map(bool, unlabelled.labels))
    trimmed = unlabelled.with_unlabelled(2)
    assert len(trimmed) == labelled + 2 and sum(map(bool, trimmed.labels)) == labelled
    assert trimmed.teacher.shape == (len(trimmed), 128) and len(trimmed.sources) == len(trimmed)
    assert len(unlabelled.with_unlabelled(10**6)) == len(unlabelled)


def test_a_negative_cap_on_unlabelled_faces_is_refused_before_any_work(tmp_path, capsys):
    from model.training.pool import main

    with pytest.raises(SystemExit) as exit_:
        main(["model/configs/mfn112-online-gpu.toml", "--out", str(tmp_path / "p.npz"), "--unlabelled", "-1"])
    assert exit_.value.code == 2 and "--unlabelled must be 0 or more" in capsys.readouterr().err
    assert not (tmp_path / "p.npz").exists()
