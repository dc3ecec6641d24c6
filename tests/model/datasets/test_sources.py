import numpy as np

from model.datasets.sources import detect_source, detections_path
from model.training.train import centre_teacher


def test_unlabelled_is_a_view_of_the_same_cached_detections(testfaces, cache):
    source = testfaces / "lfw"
    labelled = detect_source(source, cache=cache, with_teacher=False, processes=1)
    assert set(labelled.labels) == {p.name for p in source.iterdir()}
    cached = sorted(cache.iterdir())
    unlabelled = detect_source(source, cache=cache, labelled=False, with_teacher=False)
    assert sorted(cache.iterdir()) == cached, "the same cache file answers, nothing is detected again"
    assert set(unlabelled.labels) == {""}
    assert np.array_equal(unlabelled.landmarks, labelled.landmarks)


def test_the_cache_key_ignores_the_chip_but_not_the_policy_or_the_teacher(testfaces, cache):
    from model.faces.config import DATASET_POLICY, FacePolicy, PipelineConfig

    source = testfaces / "lfw"
    policy = DATASET_POLICY
    assert detections_path(cache, source, PipelineConfig(crop_size=64), policy, False) == detections_path(
        cache, source, PipelineConfig(crop_size=150, chip="dlib-chip-v1"), policy, False)
    assert detections_path(cache, source, PipelineConfig(), policy, False) != detections_path(
        cache, source, PipelineConfig(), policy, True)
    assert detections_path(cache, source, PipelineConfig(), policy, False) != detections_path(
        cache, source, PipelineConfig(), FacePolicy(), False)


def test_centre_teacher_by_hand():
    teacher = np.array([[1.0, 3.0], [3.0, 5.0], [0.0, 0.0]], np.float32)  # the last photo had no face
    centred = centre_teacher(teacher, 0.5)
    # mean of the present rows is (2, 4); half of it is taken off each present row
    assert np.allclose(centred, [[0.0, 1.0], [2.0, 3.0], [0.0, 0.0]])
