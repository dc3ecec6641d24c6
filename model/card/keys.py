"""The keys of a card's "thresholds" object that more than one writer or reader names."""

THRESHOLDS = "thresholds"
FAR_LEVELS = "far_levels"  # {FAR: threshold} of the 1:1 calibration (the validation identities' pairs)
BY_AUGMENT = "by_augment"  # {augment: default threshold}
IMPOSTOR_TAIL = "impostor_tail"  # {augment: {"far_levels": ..., "impostor_pairs": n, "data": "..."}}, for 1:N
