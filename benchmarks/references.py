"""What more than one reference per employee buys at the door, and what it costs in false accepts.

    python -m benchmarks.references [--cache DIR] [--model PATH]

LFW people with at least four photos in which the service's pipeline finds a face: each enrolls their first
three (in file order) as references, and their other photos are the camera's. A claim compares one camera
photo with one person's references; the nearest decides (as /verify does). Genuine claims: each photo against
its own person; impostor claims: each photo against every other person.

For 1, 2 and 3 references it prints:
- TAR at a per-claim FAR of 1e-3 and 1e-4, thresholds read off these impostor claims themselves: what the
  extra references are worth at equal false accepts, whatever the calibration;
- TAR and FAR at the service's thresholds: the card's calibrated one used as it is (naive: an impostor gets R
  tries), and the one the service uses for R references (model.card.curves.references_threshold,
  the same card's impostor tail at FAR / R per comparison), which should keep the FAR of one reference.
The photos, detections and embeddings are the ones model.release.export caches (the service's face policy).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.common import DATA, machine
from model.card.curves import references_threshold
from model.datasets.sources import DEFAULT_CACHE, detect_source
from model.evaluation.evaluate import embed_source, pipeline_config
from model.evaluation.metrics import tar_at_far
from model.faces.config import DEFAULT_MODEL, SERVICE_POLICY
from model.faces.embedder import Embedder

MIN_PHOTOS = 4
MAX_REFERENCES = 3


def claims(vectors: np.ndarray, labels: np.ndarray, paths: np.ndarray, references: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """(distance to the nearest of the claimed person's first `references` photos, genuine?) for every camera
    photo (a person's photos after their first MAX_REFERENCES) and every person."""
    people = sorted(p for p in set(labels) if (labels == p).sum() >= MIN_PHOTOS)
    enrolled, probes, owners = [], [], []
    for person, name in enumerate(people):
        rows = np.flatnonzero(labels == name)
        rows = rows[np.argsort(paths[rows])]
        enrolled.append(vectors[rows[:MAX_REFERENCES]][:references])
        probes.append(vectors[rows[MAX_REFERENCES:]])
        owners += [person] * (len(rows) - MAX_REFERENCES)
    gallery = np.stack(enrolled)  # (people, R, dim)
    probes_m = np.concatenate(probes)  # (photos, dim)
    # unit vectors: |a - b|^2 = 2 - 2 a.b; the nearest reference has the largest dot product
    similarity = np.einsum("pd,nrd->pnr", probes_m, gallery).max(axis=2)
    distance = np.sqrt(np.clip(2 - 2 * similarity, 0, None))
    genuine = np.zeros_like(distance, dtype=bool)
    genuine[np.arange(len(owners)), owners] = True
    return distance.ravel(), genuine.ravel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    args = parser.parse_args()
    embedder = Embedder.load(args.model, "cpu")
    config = pipeline_config(embedder)
    lfw = DATA / "lfw-deepfunneled.tar"
    faces = detect_source(lfw, cache=args.cache, config=config, policy=SERVICE_POLICY, with_teacher=False)
    vectors = embed_source(embedder, lfw, faces, config, args.cache)
    found = faces.found
    vectors, labels, paths = vectors[found], faces.labels[found], faces.paths[found]
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    levels = embedder.card.far_levels_for(embedder.augment)
    calibrated = embedder.card.threshold_for(embedder.augment)

    print(machine())
    people = sum((labels == p).sum() >= MIN_PHOTOS for p in set(labels))
    print(f"model {args.model.name} ({embedder.model_id}, augment {embedder.augment}); LFW people with >= "
          f"{MIN_PHOTOS} photos with a face: {people}; first {MAX_REFERENCES} photos enrolled, the rest probe")
    header = ("| references | genuine / impostor claims | TAR @ FAR 1e-3 | TAR @ FAR 1e-4 | calibrated threshold "
              "as is: TAR / FAR | service threshold | its TAR / FAR |")
    print(header)
    print("|---" * 7 + "|")
    for r in range(1, MAX_REFERENCES + 1):
        distance, genuine = claims(vectors, labels, paths, r)
        tar3, _ = tar_at_far(distance, genuine, 1e-3)
        tar4, _ = tar_at_far(distance, genuine, 1e-4)
        service = references_threshold(levels, calibrated, r)

        def rates(threshold: float, distance: np.ndarray = distance, genuine: np.ndarray = genuine) -> str:
            accepted = distance <= threshold
            return f"{100 * accepted[genuine].mean():.2f} % / {accepted[~genuine].mean():.2e}"

        print(f"| {r} | {genuine.sum():,} / {(~genuine).sum():,} | {100 * tar3:.2f} % | {100 * tar4:.2f} % | "
              f"{calibrated:.4f}: {rates(calibrated)} | {service:.4f} | {rates(service)} |")


if __name__ == "__main__":
    main()
