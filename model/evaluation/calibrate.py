"""Threshold calibration on the validation identities (CelebA-wild, held out of training), never on LFW.

- `calibrate`: every pair among the held-out identities' photos gives the 1:1 thresholds (the default at
  FAR = 1e-3) and the validation figures.
- `impostor_tail`: every impostor pair among all the CelebA photos gives the far tail that 1:N reads.
- `lfw_at_default`: what the chosen threshold then does on the test set, reported, never tuned on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.card.curves import far_levels, pair_distances
from model.card.keys import FAR_LEVELS
from model.datasets.sources import VALIDATION_SOURCES, detect_source
from model.evaluation.evaluate import embed_source, pipeline_config
from model.evaluation.metrics import best_threshold, equal_error_rate, roc_auc
from model.faces.config import AUGMENTS, SERVICE_POLICY
from model.faces.embedder import Embedder

DEFAULT_REASON = (
    "The default is the FAR = 1e-3 threshold: a door that lets the wrong person in is worse than one that "
    "asks for a second photo. best_accuracy maximises accuracy on the validation pairs instead."
)


def celeba_photos(embedder: Embedder, data_root: Path, cache: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(vectors, labels) of the photos with a detected face, for each of VALIDATION_SOURCES in turn."""
    config = pipeline_config(embedder)
    photos = []
    for name in VALIDATION_SOURCES:
        source = data_root / name
        faces = detect_source(source, cache=cache, config=config, policy=SERVICE_POLICY, with_teacher=False)
        photos.append((embed_source(embedder, source, faces, config, cache)[faces.found], faces.labels[faces.found]))
    return photos


def validation_pairs(embedder: Embedder, data_root: Path, cache: Path) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(genuine distances, impostor distances, photos, identities): every pair among the photos, in both CelebA
    archives, of the CelebA-wild identities (held out of training)."""
    vectors, labels = zip(*celeba_photos(embedder, data_root, cache), strict=True)
    wild_people = set(labels[0])
    keep = [np.isin(lab, sorted(wild_people)) for lab in labels]
    vectors = np.concatenate([v[k] for v, k in zip(vectors, keep, strict=True)])
    labels = np.concatenate([lab[k] for lab, k in zip(labels, keep, strict=True)])
    return *pair_distances(vectors, labels), len(vectors), len(wild_people)


def calibrate(embedder: Embedder, data_root: Path, cache: Path) -> tuple[dict, dict]:
    """(thresholds, validation figures) from every pair among the held-out CelebA identities' photos."""
    return calibrate_pairs(*validation_pairs(embedder, data_root, cache))


def calibrate_pairs(genuine: np.ndarray, impostor: np.ndarray, photos: int, identities: int) -> tuple[dict, dict]:
    """`calibrate`, from `validation_pairs`' distances and counts."""
    levels = far_levels(impostor)
    distances = np.concatenate([genuine, impostor])
    same = np.concatenate([np.ones(len(genuine), bool), np.zeros(len(impostor), bool)])
    best, best_accuracy = best_threshold(distances, same)
    default = levels["0.001"]
    thresholds = {
        "default": default, "far_1e-3": default, "best_accuracy": best, "reason": DEFAULT_REASON,
        "far_levels": levels,
        "calibration": f"{len(impostor):,} impostor and {len(genuine):,} genuine pairs among {photos:,} "
                       f"CelebA photos of the {identities} CelebA-wild identities (held out of training; "
                       "the test set untouched)",
    }
    validation = {
        "pairs": "every pair among those photos",
        "tar_at_default": float((genuine <= default).mean()),
        "tar_at_far_1e-4": float((genuine <= levels["0.0001"]).mean()) if "0.0001" in levels else None,
        "eer": equal_error_rate(distances, same),
        "best_accuracy": best_accuracy,
        "auc": roc_auc(distances, same),
    }
    return thresholds, validation


def impostor_tail(embedder: Embedder, data_root: Path, cache: Path) -> dict:
    """Thresholds at FAR 1e-1 down to 1e-7, for the 1:N decision, from every impostor pair among all the CelebA
    photos (both archives, every identity: about 30M pairs; the validation identities alone give 4M, too few
    for 1e-7).

    1:N needs FARs far below 1:1's: a stranger is compared with every template of the gallery, so the service
    asks for FAR = FPIR / N (model.card.curves.identify_threshold). LFW stays untouched.
    """
    vectors, labels = (np.concatenate(part) for part in zip(*celeba_photos(embedder, data_root, cache),
                                                              strict=True))
    _, impostor = pair_distances(vectors, labels)
    return {
        FAR_LEVELS: far_levels(impostor),
        "impostor_pairs": len(impostor),
        "data": f"every impostor pair among {len(vectors):,} CelebA photos of {len(set(labels)):,} identities "
                "(both archives)",
    }


def impostor_tails(out: Path, data_root: Path, cache: Path) -> dict:
    """The 1:N impostor tail of the model at `out`, for each test-time augmentation (fp32: the reference)."""
    return {augment: impostor_tail(Embedder.load(out, "cpu", augment, "fp32"), data_root, cache)
            for augment in AUGMENTS}


def lfw_at_default(result, threshold: float) -> dict:  # noqa: ANN001 - an Evaluation
    """What the shipped default does on LFW: TAR and FAR on the View 2 pairs, and FAR on every impostor pair
    among the detected LFW photos."""
    d, pairs_same = result.distances["facegate"], result.distances["same"]
    found = result.faces.found
    _, impostor = pair_distances(result.vectors[found], result.faces.labels[found])
    return {
        "threshold": threshold,
        "view2_tar": float((d[pairs_same] <= threshold).mean()),
        "view2_far": float((d[~pairs_same] <= threshold).mean()),
        "all_impostor_pairs": int(len(impostor)),
        "far": float((impostor <= threshold).mean()),
    }
