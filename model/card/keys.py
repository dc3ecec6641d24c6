"""The card's vocabulary: the test-time augmentations a card calibrates, and the keys of its "thresholds" object
that more than one writer or reader names. Plain names, no imports: Settings read them too."""

from typing import Literal, get_args

Augment = Literal["none", "flip", "views"]
AUGMENTS: tuple[Augment, ...] = get_args(Augment)

THRESHOLDS = "thresholds"
FAR_LEVELS = "far_levels"  # {FAR: threshold} of the 1:1 calibration (the validation identities' pairs)
BY_AUGMENT = "by_augment"  # {augment: default threshold}
IMPOSTOR_TAIL = "impostor_tail"  # {augment: {"far_levels": ..., "impostor_pairs": n, "data": "..."}}, for 1:N
BY_REFERENCES = "by_references"  # {"augment": a, "levels": {R: 1:1 threshold of a template fused from R}, ...}
NORMALISED_TAIL = "normalised_tail"  # {"augment": a, "far_levels": {FAR: AS-norm score threshold}, ...}, for 1:N
COHORT = "cohort"  # top-level: {"file", "sha256", "vectors", "k", "augment", "data", ...}
INT8 = "int8"  # top-level: {"file", "sha256", "format", "weight_bits", "calibration", "agreement", "validation", ...}
