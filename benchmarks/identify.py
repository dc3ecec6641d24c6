"""1:N open set: how often /identify names a stranger (FPIR), and how often it names an enrolled person right
(rank-1 hit rate), at gallery sizes 100, 1,000 and 5,000, with the service's own threshold rule.

    python -m benchmarks.identify [--fpir 1e-3] [--sizes 100 1000 5000] [--cache DIR]

The gallery enrolls one photo each of LFW people who have two or more photos; their other photos are the
genuine probes. Every photo of the LFW people who are not enrolled is a stranger probe. Galleries larger than
the enrollable LFW people are padded with CelebA photos (strangers to every probe; a celebrity who is in both
sets can only make FPIR look worse). Photos go through the service's pipeline and the shipped model with its
test-time augmentation; templates go into the service's search index (app.gallery.index), and the threshold
comes from model.card.curves.identify_threshold, as /identify computes it. Beside it, the same figures
at the 1:1 threshold, which /identify used before: what the FPIR rule buys and what it costs.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from app.gallery.index import EmbeddingIndex
from benchmarks.common import DATA, machine
from model.card.curves import identify_threshold
from model.datasets.sources import DEFAULT_CACHE, VALIDATION_SOURCES, detect_source
from model.evaluation.evaluate import embed_source, pipeline_config
from model.faces.embedder import DEFAULT_MODEL, Embedder


def embedded(embedder: Embedder, source: Path, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, labels) of the photos of `source` with a detected face."""
    config = pipeline_config(embedder)
    faces = detect_source(source, cache=cache, config=config, with_teacher=False)
    vectors = embed_source(embedder, source, faces, config, cache)
    found = faces.found
    return vectors[found], faces.labels[found]


def rank1(index: EmbeddingIndex, probes: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Each probe's nearest template: (employee ids, distances)."""
    best = [index.search(probe, 1)[0] for probe in probes]
    return [m.employee_id for m in best], np.array([m.distance for m in best])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--fpir", type=float, default=1e-3, help="FACEGATE_IDENTIFY_FPIR")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    embedder = Embedder.load(args.model, "cpu")
    levels = embedder.card.far_levels_for(embedder.augment)
    one_to_one = embedder.card.threshold_for(embedder.augment)
    lfw, lfw_labels = embedded(embedder, args.data / "lfw-deepfunneled.tar", args.cache)
    padding = np.concatenate([embedded(embedder, args.data / name, args.cache)[0] for name in VALIDATION_SOURCES])
    photos = defaultdict(list)
    for row, label in enumerate(lfw_labels):
        photos[str(label)].append(row)
    rng = np.random.default_rng(args.seed)
    enrollable = sorted(p for p, rows in photos.items() if len(rows) >= 2)
    rng.shuffle(enrollable)
    print(f"machine: {machine()}")
    print(f"model {embedder.model_id}, augment {embedder.augment}; 1:1 threshold {one_to_one:.4f}; FPIR target "
          f"{args.fpir:g}; LFW: {len(photos)} people with a detected face, {len(enrollable)} with 2+ photos; "
          f"padding: {len(padding)} CelebA photos")
    print(f"{'gallery':>7} {'LFW':>5} {'pad':>5} {'threshold':>9} {'strangers':>9} {'FPIR':>8} {'genuine':>7} "
          f"{'rank-1':>7}   {'at 1:1:':<7} {'FPIR':>8} {'rank-1':>7}")
    for size in args.sizes:
        people = enrollable[:size]
        enrolled = set(people)
        templates = np.stack([lfw[photos[p][0]] for p in people])
        pad = padding[:size - len(people)]
        index = EmbeddingIndex(embedder.dim)
        index.load([*people, *(f"pad-{i}" for i in range(len(pad)))], [None] * (len(people) + len(pad)),
                   np.concatenate([templates, pad]).astype(np.float32))
        genuine_rows = [r for p in people for r in photos[p][1:]]
        genuine_truth = [str(lfw_labels[r]) for r in genuine_rows]
        stranger_rows = [r for p, rows in photos.items() if p not in enrolled for r in rows]
        threshold = identify_threshold(levels, fpir=args.fpir, gallery_size=len(index), ceiling=one_to_one)
        names, distances = rank1(index, lfw[genuine_rows])
        _, stranger_distances = rank1(index, lfw[stranger_rows])
        right = np.array([n == t for n, t in zip(names, genuine_truth, strict=True)])
        figures = [((stranger_distances <= t).mean(), (right & (distances <= t)).mean()) for t in (threshold,
                                                                                                     one_to_one)]
        print(f"{len(index):>7} {len(people):>5} {len(pad):>5} {threshold:9.4f} {len(stranger_rows):>9} "
              f"{figures[0][0]:8.2%} {len(genuine_rows):>7} {figures[0][1]:7.2%}   {'':<7} {figures[1][0]:8.2%} "
              f"{figures[1][1]:7.2%}")


if __name__ == "__main__":
    main()
