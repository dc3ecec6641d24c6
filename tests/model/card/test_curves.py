"""A card's threshold curves: measured FAR curves of distances and of AS-norm scores, read in log FAR, tightened
by the gallery's size (1:N)."""

import pytest

from model.card.curves import identify_score_threshold, identify_threshold, interpolated_threshold

# {FAR per comparison: threshold}, the shape a model card's impostor tail has
LEVELS = {1e-1: 0.47, 1e-2: 0.41, 1e-3: 0.37, 1e-4: 0.33, 1e-5: 0.30}


def test_measured_levels_are_returned_and_between_them_interpolated_in_log_far():
    assert interpolated_threshold(LEVELS, 1e-3) == pytest.approx(0.37)
    assert interpolated_threshold(LEVELS, 10**-3.5) == pytest.approx(0.35)  # halfway in log FAR


def test_below_the_lowest_level_the_last_segment_is_extended():
    assert interpolated_threshold(LEVELS, 1e-6) == pytest.approx(0.27)
    assert interpolated_threshold(LEVELS, 1e-60) == 0.0, "never below zero"
    with pytest.raises(ValueError):
        interpolated_threshold({1e-3: 0.37}, 1e-3)


def test_the_threshold_tightens_as_the_gallery_grows_and_never_passes_the_1_to_1_one():
    thresholds = [identify_threshold(LEVELS, fpir=1e-3, gallery_size=n, ceiling=0.36) for n in (1, 10, 100, 1000)]
    assert thresholds == sorted(thresholds, reverse=True) and len(set(thresholds)) == 4
    assert thresholds[0] == pytest.approx(0.36), "one template: FAR = FPIR, capped at the 1:1 threshold"
    assert thresholds[1] == pytest.approx(0.33, abs=1e-3), "ten templates: about FPIR / 10 each"
    assert identify_threshold(LEVELS, fpir=1e-3, gallery_size=0, ceiling=0.5) == pytest.approx(0.37)


# {FAR per comparison: AS-norm score}, the shape of a card's normalised tail: higher scores, rarer impostors
SCORES = {1e-1: 1.2, 1e-2: 2.4, 1e-3: 3.3, 1e-4: 4.0, 1e-5: 4.6}


def test_the_normalised_threshold_rises_with_the_gallery_monotonically():
    sizes = [1, 2, 5, 10, 30, 100, 300, 1000, 5000, 100_000, 1_000_000]
    thresholds = [identify_score_threshold(SCORES, fpir=1e-3, gallery_size=n) for n in sizes]
    assert all(a < b for a, b in zip(thresholds, thresholds[1:], strict=False))
    assert thresholds[0] == pytest.approx(3.3), "one template: FAR = FPIR"
    assert identify_score_threshold(SCORES, fpir=1e-3, gallery_size=10) == pytest.approx(4.0, abs=1e-3)
    assert thresholds[-1] > 4.6, "past the lowest measured level the last segment goes on, stricter"


def test_the_distance_threshold_falls_with_the_gallery_monotonically():
    sizes = [1, 2, 5, 10, 30, 100, 300, 1000, 5000, 100_000, 1_000_000]
    thresholds = [identify_threshold(LEVELS, fpir=1e-3, gallery_size=n, ceiling=1.0) for n in sizes]
    assert all(a > b for a, b in zip(thresholds, thresholds[1:], strict=False))
