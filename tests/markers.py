"""Markers shared by several test modules."""

import pytest

# The shipped model (dlib's ResNet in PyTorch, flip; LFW 99.02 % on the research protocol, see docs/model.md) still
# rejects one genuine pair of the test faces at its default threshold (0.3747, FAR 1e-3 calibrated on
# CelebA): Laura Bush's second photo sits at 0.396 from her first (her third at 0.317; with ten views, 0.384
# against that mode's 0.3670). /identify's 1:N threshold is stricter still (0.339 for the six-person gallery of
# tests/api/test_identify.py, FPIR 1e-3).
# strict=True: the day a model accepts it, the suite fails until it is taken off this list.
MISSED_AT_DEFAULT = {"Laura_Bush"}
BELOW_TARGET_MODEL = pytest.mark.xfail(strict=True, reason="this genuine pair is rejected at the shipped model's "
                                                           "calibrated thresholds")


def genuine_cases(people: list[str]) -> list:
    """`people` as parameters, the ones the shipped model still misses marked as expected failures."""
    return [pytest.param(p, marks=BELOW_TARGET_MODEL) if p in MISSED_AT_DEFAULT else p for p in people]
