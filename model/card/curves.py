"""The threshold maths of a model card: from impostor distances to {FAR: threshold} points when a card is written,
and from those points to the thresholds the service decides with when it is read.

A card's curve is a handful of measured points (FAR_LEVELS). Between two of them the threshold is interpolated
in log FAR; below the lowest it is extrapolated along the last two, which is stricter than the true tail (a
Gaussian-like tail falls faster than that line), never looser.
"""

from __future__ import annotations

import math

import numpy as np

# FAR levels whose thresholds a card keeps, as far down as the impostor pairs can measure.
FAR_LEVELS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7)

Curve = dict[float, float]  # {FAR per comparison: distance threshold} (or AS-norm score threshold)
# The false accept rate of a card's default 1:1 threshold (model.evaluation.calibrate).
VERIFY_FAR = 1e-3


# --- writing: measured distances -> points ----------------------------------------------------------------

def pair_distances(vectors: np.ndarray, labels: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) distances of every unordered pair of photos (unit vectors), by identity."""
    genuine, impostor = [], []
    for start in range(0, len(vectors), chunk):
        rows = vectors[start:start + chunk]
        d = np.sqrt(np.clip(2 - 2 * rows @ vectors.T, 0, None)).astype(np.float32)
        later = np.arange(len(vectors))[None, :] > np.arange(start, start + len(rows))[:, None]
        same = labels[None, :] == labels[start:start + chunk, None]
        genuine.append(d[later & same])
        impostor.append(d[later & ~same])
    return np.concatenate(genuine), np.concatenate(impostor)


def threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """The largest threshold at which (accepting distance <= threshold) at most `far` of impostors pass."""
    allowed = int(np.floor(far * len(impostor)))
    first_refused = np.partition(impostor, allowed)[allowed]
    return float(np.nextafter(first_refused, np.float32(0)))


def far_levels(impostor: np.ndarray) -> dict[str, float]:
    """{FAR: threshold} at each of FAR_LEVELS that the impostor pairs can measure (one pair at least), keyed as
    the card's JSON keys them ("0.001")."""
    return {f"{far:g}": threshold_at_far(impostor, far) for far in FAR_LEVELS if far * len(impostor) >= 1}


# --- reading: points -> decisions -------------------------------------------------------------------------

def interpolated_threshold(levels: Curve, far: float) -> float:
    """The distance threshold that gives a false accept rate of `far` per comparison on the curve `levels`."""
    return max(0.0, interpolated(levels, far))


def interpolated(levels: Curve, far: float) -> float:
    """The threshold (a distance or a score) at `far` on the curve `levels`, linear in log FAR."""
    points = sorted((math.log10(f), t) for f, t in levels.items())
    if len(points) < 2:
        raise ValueError("at least two FAR levels are needed")
    x = math.log10(far)
    # the segment around x, or the end segment nearest to it
    i = next((i for i in range(len(points) - 1) if x <= points[i + 1][0]), len(points) - 2)
    (x0, t0), (x1, t1) = points[i], points[i + 1]
    return t0 + (t1 - t0) * (x - x0) / (x1 - x0)


def identify_threshold(levels: Curve, *, fpir: float, gallery_size: int, ceiling: float) -> float:
    """The open-set (1:N) threshold for a false-positive identification rate `fpir` on strangers.

    A stranger is compared with all N templates (one per employee), and is named when any one of them is
    close enough: with a per-comparison FAR f, FPIR = 1 - (1 - f)^N, about N f. So f = fpir / N, and
    the threshold tightens as the gallery grows. It is never looser than the 1:1 threshold (`ceiling`).
    """
    return min(ceiling, interpolated_threshold(levels, per_comparison_far(fpir, gallery_size)))


def identify_score_threshold(levels: Curve, *, fpir: float, gallery_size: int) -> float:
    """The open-set (1:N) threshold on AS-norm scores (model.card.scores) for a false-positive identification
    rate `fpir`: as identify_threshold, with `levels` the card's normalised impostor tail {FAR: score}. It rises
    with the gallery's size."""
    return interpolated(levels, per_comparison_far(fpir, gallery_size))


def per_comparison_far(fpir: float, gallery_size: int) -> float:
    """The FAR per comparison that keeps FPIR = 1 - (1 - f)^N at `fpir` over a gallery of N."""
    return 1 - (1 - fpir) ** (1 / max(gallery_size, 1))
