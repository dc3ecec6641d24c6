"""Verification metrics on pair distances: a pair is declared "same person" when distance <= threshold.

A pair whose face could not be found gets distance +inf: the service would not match it, so it counts
as "different" at every threshold, and is never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def best_threshold(distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """The threshold with the highest accuracy on these pairs, and that accuracy.

    Candidates are the midpoints between consecutive sorted distances (and both ends), so the choice does
    not depend on any grid.
    """
    order = np.argsort(distances, kind="stable")
    d, s = distances[order], same[order]
    finite = d[np.isfinite(d)]
    candidates = np.concatenate([[finite[0] - 1e-6] if finite.size else [0.0],
                                 (finite[:-1] + finite[1:]) / 2, [finite[-1] + 1e-6] if finite.size else []])
    # For each candidate, accepted = pairs with d <= t: same pairs accepted + different pairs rejected.
    accepted = np.searchsorted(d, candidates, side="right")
    same_cum = np.concatenate([[0], np.cumsum(s)])
    true_accepts = same_cum[accepted]
    true_rejects = (~s).sum() - (accepted - true_accepts)
    accuracy = (true_accepts + true_rejects) / len(d)
    best = int(np.argmax(accuracy))
    return float(candidates[best]), float(accuracy[best])


def kfold_accuracy(distances: np.ndarray, same: np.ndarray, folds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-fold accuracy, each fold judged with the threshold chosen on all the other folds."""
    accuracies, thresholds = [], []
    for fold in np.unique(folds):
        test = folds == fold
        threshold, _ = best_threshold(distances[~test], same[~test])
        predicted = distances[test] <= threshold
        accuracies.append(float((predicted == same[test]).mean()))
        thresholds.append(threshold)
    return np.array(accuracies), np.array(thresholds)


def roc(distances: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false accept rate, true accept rate, threshold) at every distinct threshold, FAR increasing."""
    thresholds = np.unique(distances[np.isfinite(distances)])
    genuine, impostor = np.sort(distances[same]), np.sort(distances[~same])
    tar = np.searchsorted(genuine, thresholds, side="right") / max(1, len(genuine))
    far = np.searchsorted(impostor, thresholds, side="right") / max(1, len(impostor))
    return np.concatenate([[0.0], far]), np.concatenate([[0.0], tar]), np.concatenate([[-np.inf], thresholds])


def equal_error_rate(distances: np.ndarray, same: np.ndarray) -> float:
    """The rate where false accepts equal false rejects, interpolated between ROC points."""
    far, tar, _ = roc(distances, same)
    frr = 1 - tar
    diff = far - frr  # increasing along the ROC
    i = int(np.searchsorted(diff, 0.0))
    if i == 0:
        return float(frr[0])
    if i >= len(diff):
        return float(far[-1])
    t = diff[i - 1] / (diff[i - 1] - diff[i])
    return float(far[i - 1] + t * (far[i] - far[i - 1]))


def tar_at_far(distances: np.ndarray, same: np.ndarray, target: float) -> tuple[float, float]:
    """(TAR, threshold) at the largest threshold whose false accept rate does not exceed `target`."""
    impostor = np.sort(distances[~same])
    allowed = int(np.floor(target * len(impostor)))  # impostor pairs we may accept
    threshold = impostor[allowed] if allowed < len(impostor) else np.inf  # accept d < threshold
    return float((distances[same] < threshold).mean()), float(threshold)


def roc_auc(distances: np.ndarray, same: np.ndarray) -> float:
    """P(impostor distance > genuine distance), ties counting one half (Mann-Whitney U)."""
    genuine, impostor = distances[same], distances[~same]
    ranks = _average_ranks(np.concatenate([genuine, impostor]))
    impostor_rank_sum = ranks[len(genuine):].sum()
    u = impostor_rank_sum - len(impostor) * (len(impostor) + 1) / 2
    return float(u / (len(genuine) * len(impostor)))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    ranks = np.empty(len(values))
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


@dataclass(frozen=True)
class VerificationReport:
    accuracy: float
    accuracy_std: float
    threshold: float  # best-accuracy threshold on all pairs
    eer: float
    tar_at_far: dict[str, float]
    far_thresholds: dict[str, float]
    auc: float
    pairs: int
    no_face: int


def verification_report(distances: np.ndarray, same: np.ndarray, folds: np.ndarray, *, no_face: int,
                        fars: tuple[float, ...] = (1e-2, 1e-3)) -> VerificationReport:
    accuracies, _ = kfold_accuracy(distances, same, folds)
    threshold, _ = best_threshold(distances, same)
    tars = {str(f): tar_at_far(distances, same, f) for f in fars}
    return VerificationReport(
        accuracy=float(accuracies.mean()),
        accuracy_std=float(accuracies.std()),
        threshold=threshold,
        eer=equal_error_rate(distances, same),
        tar_at_far={k: v[0] for k, v in tars.items()},
        far_thresholds={k: v[1] for k, v in tars.items()},
        auc=roc_auc(distances, same),
        pairs=len(distances),
        no_face=no_face,
    )
