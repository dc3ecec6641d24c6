"""Enrollment quality thresholds, from measurement: what each check refuses, and what it buys at the door.

    python -m benchmarks.quality [--cache DIR]

Every photo goes through the service's pipeline and face policy (the detections and embeddings are the ones
model.release.export caches). For each check and threshold: the share of LFW and of CelebA photos it refuses as
references, and the TAR and FAR at the shipped default threshold on the pairs whose reference passes,
beside those of every pair (no check):
- LFW View 2: the first photo of each pair plays the reference (the enrollment), the second the camera's;
- CelebA (both archives, every identity): every ordered pair of photos, the first the reference. Its faces
  vary far more in size, sharpness and pose than LFW's, whose photos are all 250 px crops of press photos.
The last row is the service's default thresholds (Settings), all checks together.
"""

from __future__ import annotations

import argparse
import multiprocessing
from collections.abc import Callable
from pathlib import Path

import numpy as np

from app.core.config import Settings
from benchmarks.common import DATA, machine
from model.datasets.sources import DEFAULT_CACHE, FaceSet, detect_source, iter_images, read_lfw_pairs
from model.evaluation.evaluate import embed_source, index_pairs, pipeline_config
from model.faces.config import DEFAULT_MODEL, SERVICE_POLICY, Quality
from model.faces.decode import decode_image
from model.faces.embedder import Embedder
from model.faces.quality import assess

CHECKS: list[tuple[str, str, list[float], Callable[[Quality, float], bool]]] = [
    ("face size", "px, at least", [60, 80, 100, 120], lambda q, t: q.face_size >= t),
    ("sharpness", "at least", [10, 20, 30, 50], lambda q, t: q.sharpness >= t),
    ("yaw", "degrees, at most", [45, 35, 30, 25, 15], lambda q, t: abs(q.yaw) <= t),
    ("roll", "degrees, at most", [30, 25, 15, 10], lambda q, t: abs(q.roll) <= t),
    ("brightness", "at least", [30, 40, 60, 80], lambda q, t: q.brightness >= t),
    ("brightness", "at most", [240, 220, 200, 180], lambda q, t: q.brightness <= t),
]


def _assess(item: tuple[bytes, object]) -> Quality:
    data, face = item
    rgb = decode_image(data, max_pixels=SERVICE_POLICY.max_pixels, max_bytes=SERVICE_POLICY.max_decode_bytes)
    return assess(rgb, face)


def qualities(source: Path, faces: FaceSet) -> list[Quality | None]:
    """The quality of every photo's face (None where the policy found none)."""
    by_path = dict(iter_images(source))
    wanted = np.flatnonzero(faces.found)
    out: list[Quality | None] = [None] * len(faces)
    with multiprocessing.get_context("fork").Pool() as pool:
        for row, quality in zip(wanted, pool.imap(_assess, ((by_path[str(faces.paths[i])], faces.face(i))
                                                            for i in wanted), chunksize=32), strict=True):
            out[row] = quality
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    embedder = Embedder.load(DEFAULT_MODEL, "cpu")
    config = pipeline_config(embedder)
    threshold = embedder.card.threshold_for(embedder.augment)
    lfw = DATA / "lfw-deepfunneled.tar"
    faces = detect_source(lfw, cache=args.cache, config=config, policy=SERVICE_POLICY, with_teacher=False)
    pairs = index_pairs(faces, read_lfw_pairs(DATA / "lfw-pairs.txt"), lfw)
    vectors = embed_source(embedder, lfw, faces, config, args.cache)
    lfw_quality = qualities(lfw, faces)
    celeba_quality, celeba_vectors, celeba_labels = [], [], []
    for name in ("celeba-wild.tar", "celeba-aligned.tar"):
        source = DATA / name
        found = detect_source(source, cache=args.cache, config=config, policy=SERVICE_POLICY, with_teacher=False)
        celeba_quality += [q for q in qualities(source, found) if q is not None]
        celeba_vectors.append(embed_source(embedder, source, found, config, args.cache)[found.found])
        celeba_labels.append(found.labels[found.found])
    # per reference photo (a row): how many of its genuine / impostor pairs there are, and how many are accepted
    celeba, labels = np.concatenate(celeba_vectors), np.concatenate(celeba_labels)
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(same, False)
    accepted = np.sqrt(np.clip(2 - 2 * celeba @ celeba.T, 0, None)) <= threshold
    np.fill_diagonal(accepted, False)
    other = ~same
    np.fill_diagonal(other, False)
    celeba_counts = np.stack([same.sum(1), (same & accepted).sum(1), other.sum(1), (other & accepted).sum(1)], 1)

    ok = pairs.acquired
    distance = np.linalg.norm(vectors[pairs.index_a] - vectors[pairs.index_b], axis=1)
    used = [lfw_quality[i] for i in np.unique(pairs.index_a[ok])]

    def row(name: str, passes: Callable[[Quality], bool]) -> str:
        keep = ok & np.array([q is not None and passes(q) for q in (lfw_quality[i] for i in pairs.index_a)])
        genuine, impostor = keep & pairs.same, keep & ~pairs.same
        tar = (distance[genuine] <= threshold).mean()
        far = (distance[impostor] <= threshold).mean()
        refused_lfw = 1 - np.mean([passes(q) for q in used])
        passing = np.array([passes(q) for q in celeba_quality])
        genuine_n, genuine_ok, impostor_n, impostor_ok = celeba_counts[passing].sum(0)
        return (f"| {name} | {100 * refused_lfw:.1f} % | {100 * tar:.2f} % ({genuine.sum()}) | "
                f"{100 * far:.2f} % ({impostor.sum()}) | {100 * (1 - passing.mean()):.1f} % | "
                f"{100 * genuine_ok / genuine_n:.2f} % ({genuine_n:,}) | {impostor_ok / impostor_n:.1e} "
                f"({impostor_n:,}) |")

    print(f"machine: {machine()}")
    print(f"model {embedder.model_id} ({embedder.augment}), default threshold {threshold:.4f}; {len(used)} LFW "
          f"references, {len(celeba_quality)} CelebA photos")
    print("| check | LFW: references refused | LFW: TAR (genuine pairs) | LFW: FAR (impostor pairs) | CelebA: "
          "references refused | CelebA: TAR | CelebA: FAR |")
    print("|---|---|---|---|---|---|---|")
    print(row("none", lambda q: True))
    for name, unit, thresholds, passes in CHECKS:
        for t in thresholds:
            print(row(f"{name} {unit} {t:g}", lambda q, t=t, passes=passes: passes(q, t)))
    policy = Settings().quality.policy
    print(row("the service's defaults, all together", lambda q: not policy.failures(q)))


if __name__ == "__main__":
    main()
