"""Markers shared by several test modules."""

import pytest

# The shipped model (LFW 84.4 %, TAR 22 % at FAR 1e-3; see model/MODEL_CARD.md) is too weak to accept these
# genuine pairs at the default FAR = 1e-3 threshold. strict=True: the day a better model passes them, the suite
# fails until this marker is removed (issue 5).
BELOW_TARGET_MODEL = pytest.mark.xfail(strict=True, reason="shipped model below target: genuine pairs rejected at "
                                                           "the FAR 1e-3 default (issue 5)")
