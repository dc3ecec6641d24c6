import numpy as np
import pytest

from model.evaluation.metrics import (
    best_threshold,
    equal_error_rate,
    kfold_accuracy,
    roc_auc,
    tar_at_far,
    verification_report,
)

# Hand-worked example: 4 genuine and 4 impostor pairs.
D = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
SAME = np.array([True, True, True, True, False, False, False, False])


def test_best_threshold_by_hand():
    # Accept d <= t. Between 0.3 and 0.4: 3 of 4 genuine and 4 of 4 impostors right (7/8).
    # Between 0.6 and 0.7: 4 genuine right, 3 impostors right (7/8) as well; the first best is kept.
    threshold, accuracy = best_threshold(D, SAME)
    assert accuracy == pytest.approx(7 / 8)
    assert threshold == pytest.approx(0.35)


def test_kfold_uses_the_other_folds_threshold():
    folds = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    accuracies, thresholds = kfold_accuracy(D, SAME, folds)
    # Fold 0 judged with fold 1's pairs: d=[0.2, 0.6 | 0.7, 0.9] -> best t = 0.65; fold 0 at 0.65: 0.1, 0.3
    # accepted (right), 0.4 accepted (wrong), 0.8 rejected (right) -> 3/4.
    assert thresholds[0] == pytest.approx(0.65)
    assert accuracies[0] == pytest.approx(0.75)


def test_auc_by_hand():
    # 16 (genuine, impostor) comparisons; only (0.6, 0.4) is ordered wrongly -> 15/16.
    assert roc_auc(D, SAME) == pytest.approx(15 / 16)


def test_tar_at_far_by_hand():
    # FAR 0.25 allows 1 of 4 impostors: threshold is the second-smallest impostor (0.7), accept d < 0.7.
    tar, threshold = tar_at_far(D, SAME, 0.25)
    assert threshold == pytest.approx(0.7) and tar == pytest.approx(1.0)
    tar, threshold = tar_at_far(D, SAME, 0.0)  # no impostor may pass: accept d < 0.4
    assert threshold == pytest.approx(0.4) and tar == pytest.approx(0.75)


def test_eer_of_perfectly_separated_scores_is_zero_and_of_mixed_is_between():
    separated = np.array([0.1, 0.2, 0.8, 0.9])
    same = np.array([True, True, False, False])
    assert equal_error_rate(separated, same) == pytest.approx(0.0)
    assert 0 < equal_error_rate(D, SAME) <= 0.25


def test_missing_faces_count_as_different_and_are_kept():
    d = D.copy()
    d[0] = np.inf  # a genuine pair whose face was not found
    report = verification_report(d, SAME, np.arange(8) % 2, no_face=1)
    assert report.pairs == 8 and report.no_face == 1
    assert report.auc < roc_auc(D, SAME)
