"""What more than one reference per employee buys at the door, and what it costs in false accepts.

    python -m benchmarks.references [--cache DIR] [--model PATH]

LFW people with at least four photos in which the service's pipeline finds a face: each enrolls their first
three (in file order) as references, and their other photos are the camera's. A claim compares one camera
photo with one person's references. Genuine claims: each photo against its own person; impostor claims: each
photo against every other person. Rules: "nearest" (the nearest reference's distance decides: the rule before),
"fused" (the references fused into one template, their normalised mean; its distance decides) and, with the
model's cohort, "fused as-norm" (the fused template's AS-norm score decides: what /verify does).

For 1, 2 and 3 references it prints, per rule:
- TAR at a per-claim FAR of 1e-3 and 1e-4, thresholds read off these impostor claims themselves: what the
  extra references are worth at equal false accepts, whatever the calibration;
- TAR and FAR at the service's own threshold for a template of R references (RecognitionService: the card's,
  calibrated on CelebA for fused templates of that many), for the fused rules.
The photos, detections and embeddings are the ones model.release.export caches (the service's face policy).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from app.core.config import Settings
from app.services.recognition import RecognitionService, Serving
from benchmarks.common import DATA, machine
from model.card.scores import Cohort, as_norm, fuse
from model.datasets.sources import DEFAULT_CACHE, detect_source
from model.evaluation.evaluate import embed_source, pipeline_config
from model.evaluation.metrics import tar_at_far
from model.faces.config import DEFAULT_MODEL, SERVICE_POLICY
from model.faces.embedder import Embedder

MIN_PHOTOS = 4
MAX_REFERENCES = 3


def claims(vectors: np.ndarray, labels: np.ndarray, paths: np.ndarray, references: int, rule: str,
           cohort: Cohort | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(how far each camera photo is from the claimed person's first `references` photos, genuine?) for every
    camera photo (a person's photos after their first MAX_REFERENCES) and every person. How far: the distance
    to their fused template, or to the nearest of them, by `rule`; with a `cohort`, minus the fused template's
    AS-norm score (lower is nearer either way)."""
    people = sorted(p for p in set(labels) if (labels == p).sum() >= MIN_PHOTOS)
    enrolled, probes, owners = [], [], []
    for person, name in enumerate(people):
        rows = np.flatnonzero(labels == name)
        rows = rows[np.argsort(paths[rows])]
        enrolled.append(vectors[rows[:MAX_REFERENCES]][:references])
        probes.append(vectors[rows[MAX_REFERENCES:]])
        owners += [person] * (len(rows) - MAX_REFERENCES)
    gallery = np.stack(enrolled)  # (people, R, dim)
    if rule == "fused":
        gallery = np.stack([fuse(references) for references in gallery])[:, None]  # (people, 1, dim)
    probes_m = np.concatenate(probes)  # (photos, dim)
    # unit vectors: |a - b|^2 = 2 - 2 a.b; the nearest reference has the largest dot product
    similarity = np.einsum("pd,nrd->pnr", probes_m, gallery).max(axis=2)
    distance = np.sqrt(np.clip(2 - 2 * similarity, 0, None))
    if cohort is not None:
        template_mean, template_sd = cohort.stats(gallery[:, 0])
        probe_mean, probe_sd = cohort.stats(probes_m)
        distance = -as_norm(similarity, template_mean[None], template_sd[None], probe_mean[:, None], probe_sd[:, None])
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
    service = RecognitionService(settings=Settings(threshold=None), serving=Serving(embedder, pipeline=None))

    print(machine())
    people = sum((labels == p).sum() >= MIN_PHOTOS for p in set(labels))
    print(f"model {args.model.name} ({embedder.model_id}, augment {embedder.augment}); LFW people with >= "
          f"{MIN_PHOTOS} photos with a face: {people}; first {MAX_REFERENCES} photos enrolled, the rest probe")
    print("| references | rule | genuine / impostor claims | TAR @ FAR 1e-3 | TAR @ FAR 1e-4 | service threshold | "
          "its TAR / FAR |")
    print("|---" * 7 + "|")
    rules = ["nearest", "fused"] + (["fused as-norm"] if embedder.cohort else [])
    for r in range(1, MAX_REFERENCES + 1):
        for rule in rules if r > 1 else rules[1:]:
            cohort = embedder.cohort if rule == "fused as-norm" else None
            distance, genuine = claims(vectors, labels, paths, r, rule.split()[0], cohort)
            tar3, _ = tar_at_far(distance, genuine, 1e-3)
            tar4, _ = tar_at_far(distance, genuine, 1e-4)
            if rule == "nearest":
                at_service = "- | -"
            else:
                threshold = (-service.score_threshold_of(service.serving, r) if cohort
                             else service.threshold_of(service.serving, r))
                accepted = distance <= threshold
                at_service = (f"{abs(threshold):.4f} | {100 * accepted[genuine].mean():.2f} % / "
                              f"{accepted[~genuine].mean():.2e}")
            print(f"| {r} | {rule} | {genuine.sum():,} / {(~genuine).sum():,} | "
                  f"{100 * tar3:.2f} % | {100 * tar4:.2f} % | {at_service} |")


if __name__ == "__main__":
    main()
