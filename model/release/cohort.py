"""Ship a model's decision calibration beside its card: the AS-norm cohort, its K, the 1:1 thresholds of fused
templates and the impostor tail of normalised scores. Validation data only (model.evaluation.cohort).

    python -m model.release.cohort model/weights/facegate-resnet.pt --data ../shared/data \
        [--sizes 2000 4000 8000 23000] [--ks 50 100 200 400 800] [--max-references 5]

Writes `<name>.cohort.npy` (float16 vectors of UTKFace faces: no photos, no identities) and adds to the card:
`cohort` (file, hash, size, K, data, the choice's table) and, under `thresholds`, `by_references` (1:1,
per number of references fused) and `normalised_tail` (1:N, for one reference and per number fused; a fused
kind's level is never below the one-reference level at the same FAR). All of it for the augmentation the card
serves with; a service running another one decides on plain distances (docs/decisions.md).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from pathlib import Path

import numpy as np

from model.card.keys import BY_REFERENCES, COHORT, INT8, NORMALISED_TAIL, THRESHOLDS
from model.card.schema import cohort_path, read_card, write_card
from model.card.scores import Cohort
from model.datasets.sources import DEFAULT_CACHE
from model.evaluation.calibrate import celeba_photos
from model.evaluation.cohort import (
    COHORT_SOURCE,
    choose_cohort,
    cohort_pool,
    fused_normalised_tail,
    normalised_tail,
    template_thresholds,
)
from model.faces.embedder import Embedder

log = logging.getLogger(__name__)


def ship_cohort(weights: Path, data_root: Path, cache: Path, *, sizes: list[int], ks: list[int],
                max_references: int) -> dict:
    embedder = Embedder.load(weights, "cpu", precision="fp32")
    pool = cohort_pool(embedder, data_root, cache)
    parts = celeba_photos(embedder, data_root, cache)  # per archive; the first is CelebA-wild's
    vectors = np.concatenate([v for v, _ in parts]).astype(np.float32)
    labels = np.concatenate([lab for _, lab in parts]).astype(str)
    size, k, table = choose_cohort(pool, vectors, labels, sizes=[min(s, len(pool)) for s in sizes], ks=ks)
    log.info("chosen on CelebA: cohort of %d, K=%d", size, k)
    stored = pool[:size].astype(np.float16)
    cohort = Cohort(stored.astype(np.float32), k)  # what the service will load
    by_references, tail = decision_thresholds(parts, cohort, embedder.augment, max_references)

    path = cohort_path(weights)
    np.save(path, stored)
    card = read_card(weights)
    card[COHORT] = {
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "vectors": int(size),
        "k": int(k),
        "augment": embedder.augment,
        "data": f"{size:,} UTKFace photos at random (of the {len(pool):,} with a face), embedded by this model "
                f"with {embedder.augment}: vectors only, no photos, no identities. UTKFace is training-side "
                "(unlabelled) and neither the validation source (CelebA) nor the test set (LFW); its people "
                "cannot be checked against LFW's",
        "licence": "UTKFace: non-commercial research use only",
        "chosen_on": "CelebA open-set trials (both archives; 1,000 enrolled with 1 or 3 references, every photo of "
                     "the others a stranger; 5 random splits): the best mean rank-1 over FPIR 1e-2 and 1e-3",
        "choice": table,
    }
    card[THRESHOLDS][BY_REFERENCES] = by_references
    card[THRESHOLDS][NORMALISED_TAIL] = tail
    if THRESHOLDS in card.get(INT8, {}):  # calibrated against the cohort this one replaces
        del card[INT8][THRESHOLDS]
        log.warning("the int8 network's thresholds were dropped (the CPU serves fp32 until then): run "
                    "python -m model.release.quantize again")
    write_card(weights, card)
    return card


def decision_thresholds(parts: list[tuple[np.ndarray, np.ndarray]], cohort: Cohort, augment: str,
                        max_references: int) -> tuple[dict, dict]:
    """The card's `by_references` (1:1, templates fused from 1 to `max_references`) and `normalised_tail` (1:N,
    AS-norm scores against `cohort`) sections, from the CelebA photos' (vectors, labels) of each archive, the
    CelebA-wild one first (model.evaluation.calibrate.celeba_photos)."""
    vectors = np.concatenate([v for v, _ in parts]).astype(np.float32)
    labels = np.concatenate([lab for _, lab in parts]).astype(str)
    wild_people = set(parts[0][1])
    tail = normalised_tail(vectors, labels, cohort)
    levels = tail["far_levels"]
    fused = {str(r): fused_normalised_tail(vectors, labels, cohort, levels, wild_people=wild_people, references=r)
             for r in range(2, max_references + 1)}
    for kind in fused.values():  # never looser than one reference's: the deepest levels rest on a few pairs
        kind["far_levels"] = {far: max(t, levels[far]) for far, t in kind["far_levels"].items() if far in levels}
    by_references = template_thresholds(vectors, labels, wild_people=wild_people, max_references=max_references)
    return {
        "augment": augment, "far": 1e-3, **by_references,
        "data": "templates fused from R random photos of each CelebA-wild identity (20 draws each), against "
                "every CelebA photo of other people; genuine: the identity's other photos",
    }, {
        "augment": augment, **tail,
        "data": f"every impostor pair among {len(vectors):,} CelebA photos (both archives), AS-norm K={cohort.k}",
        BY_REFERENCES: fused,
        "by_references_data": "templates fused from R random photos of each CelebA-wild identity (20 draws each), "
                              "against every CelebA photo of other people; far_at_single_levels: what the "
                              "one-photo levels would let through for them",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000, 8000, 23_000])
    parser.add_argument("--ks", type=int, nargs="+", default=[50, 100, 200, 400, 800])
    parser.add_argument("--max-references", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not (args.data / COHORT_SOURCE).exists():
        parser.error(f"{args.data / COHORT_SOURCE} is missing")
    ship_cohort(args.weights, args.data, args.cache, sizes=args.sizes, ks=args.ks,
                max_references=args.max_references)


if __name__ == "__main__":
    main()
