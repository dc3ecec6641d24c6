"""Markers shared by several test modules."""

import pytest

# The shipped model (LFW 92.3 %, TAR 52.4 % at FAR 1e-3; see model/MODEL_CARD.md) still rejects some genuine
# pairs at the default FAR = 1e-3 threshold (0.647): these people's second photos sit at distances 0.73 to
# 0.99 from their first. strict=True: the day a better model accepts one, the suite fails until it is taken
# off this list (issue 5).
MISSED_AT_DEFAULT = {"Tony_Blair", "Colin_Powell", "Hugo_Chavez", "Laura_Bush"}
BELOW_TARGET_MODEL = pytest.mark.xfail(strict=True, reason="shipped model below target: this genuine pair is "
                                                           "rejected at the FAR 1e-3 default (issue 5)")


def genuine_cases(people: list[str]) -> list:
    """`people` as parameters, the ones the shipped model still misses marked as expected failures."""
    return [pytest.param(p, marks=BELOW_TARGET_MODEL) if p in MISSED_AT_DEFAULT else p for p in people]
