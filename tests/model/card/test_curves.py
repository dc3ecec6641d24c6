"""A card's threshold curve: a measured FAR curve, read in log FAR, tightened by the gallery's size (1:N) and by an
employee's number of references (1:1)."""

import pytest

from model.card.curves import far_at, identify_threshold, interpolated_threshold, references_threshold

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


def test_far_at_inverts_the_interpolated_threshold():
    for far in (3e-1, 1e-1, 2e-3, 1e-3, 5e-4, 1e-5, 1e-7):
        assert far_at(LEVELS, interpolated_threshold(LEVELS, far)) == pytest.approx(far, rel=1e-9)


def test_the_threshold_tightens_with_references_so_that_an_impostor_s_chance_stays_the_same():
    base = interpolated_threshold(LEVELS, 1e-3)
    assert references_threshold(LEVELS, base, 1) == base
    thresholds = [references_threshold(LEVELS, base, r) for r in range(1, 6)]
    assert all(a > b for a, b in zip(thresholds, thresholds[1:], strict=False))
    # R comparisons at the per-comparison FAR of the R-reference threshold give the calibrated per-claim FAR
    for r, threshold in enumerate(thresholds, start=1):
        assert 1 - (1 - far_at(LEVELS, threshold)) ** r == pytest.approx(1e-3, rel=1e-6)
    # an operator's own threshold (FACEGATE_THRESHOLD) tightens the same way, never loosens
    assert references_threshold(LEVELS, 0.5, 3) < 0.5
