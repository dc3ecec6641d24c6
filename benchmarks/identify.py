"""1:N open set: how often /identify names a stranger (FPIR), and how often it names an enrolled person right
(rank-1 hit rate), at gallery sizes 100, 1,000 and 5,000, with the service's own decision.

    python -m benchmarks.identify [--fpir 1e-3] [--sizes 100 1000 5000] [--references 3] [--cache DIR]
                                  [--groups 50 500] [--group-gallery 5000] [--seed 0] [--draws 1]
    python -m benchmarks.identify --validation [--sizes 100 1000] [--draws 10]

One reference each: the gallery enrolls one photo each of LFW people who have two or more photos; their other
photos are the genuine probes. Every photo of the LFW people who are not enrolled is a stranger probe.
Galleries larger than the enrollable LFW people are padded with CelebA photos (strangers to every probe; a
celebrity who is in both sets can only make FPIR look worse).

Which LFW people a gallery enrolls is a random draw (`--seed`); a gallery of 100 meets about 200 genuine
probes, so one draw's rank-1 is a few points either way. `--draws D` repeats each one-reference size with the
seeds after it too, and prints the mean, the spread and the range over the D galleries (a gallery that holds
every enrollable LFW person, padded, is the same whatever the draw, and is measured once).

Three references: the LFW people with four or more photos, enrolled with their first three (fused into one
template each, as the service does), their other photos the genuine probes; strangers as above.

Photos go through the service's pipeline and the shipped model with its test-time augmentation; templates go
into the service's search index (app.gallery.index), and the service decides (RecognitionService.decide):
thresholds from the model card, calibrated on CelebA only. Each row is measured with each lever on in turn,
so that each one's share of the gain shows: "distance" ranks and decides by distance (the rule before the
cohort), "as-norm" by the score normalised against the model's cohort.

Groups (`--groups`): a door admits a group of G of the enrolled LFW people, inside a gallery of
`--group-gallery` (one reference each, padded as above), and searches only them, with G as N in the 1:N
rule, as /identify does for a key bound to the group. Its genuine probes are the group's members' other
photos; its strangers are every photo of an LFW person outside the group, enrolled elsewhere in the gallery
or not at all (to a door, an employee of another floor is a stranger).

`--validation` runs the one-reference galleries on CelebA instead (both archives: the photos whose impostor
pairs the card's tails were calibrated on), with no padding, so sizes up to its people with 2+ photos; groups
and the multi-reference gallery are skipped. It tells the calibration apart from the shift between the two
sets: the rule should give about the FPIR asked there, whatever it gives on LFW.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from app.core.config import Settings
from app.gallery.index import EmbeddingIndex
from app.services.recognition import RecognitionService, Serving
from benchmarks.common import DATA, machine
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


def decided(service: RecognitionService, serving: Serving, probes: np.ndarray, within: set[str] | None = None
            ) -> tuple[list[str | None], float]:
    """Whom the service names for each probe (None: unknown), and the threshold; `within`: searching only
    these groups."""
    named, threshold = [], 0.0
    searched = serving.index.size_within(within)
    for probe in probes:
        found = serving.index.search(probe, 1, within=within)
        best, threshold = service.decide(serving, found[0] if found else None, gallery_size=searched)
        named.append(best.employee_id if best else None)
    return named, threshold


def trial(embedder: Embedder, fpir: float, ids: list[str], references: np.ndarray, genuine: np.ndarray,
          truth: list[str], strangers: np.ndarray, group: list[str] | None = None) -> tuple[float, float, float]:
    """(threshold, FPIR, rank-1) of the service's decision over a gallery of `ids` with `references` (an id
    listed R times has R references); `group`: searching only these members."""
    serving = Serving(embedder, pipeline=None, index=EmbeddingIndex(embedder.dim, cohort=embedder.cohort))
    serving.index.load(ids, [None] * len(ids), references.astype(np.float32))
    within = None
    if group is not None:
        serving.index.load_groups({"door": group})
        within = {"door"}
    service = RecognitionService(settings=Settings(identify_fpir=fpir, threshold=None), serving=serving)
    named, threshold = decided(service, serving, genuine, within)
    stranger_named, _ = decided(service, serving, strangers, within)
    fpir_measured = float(np.mean([n is not None for n in stranger_named]))
    rank1 = float(np.mean([n == t for n, t in zip(named, truth, strict=True)]))
    return threshold, fpir_measured, rank1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--fpir", type=float, default=1e-3, help="FACEGATE_IDENTIFY_FPIR")
    parser.add_argument("--sizes", type=int, nargs="+", help="default 100 1000 5000 (--validation: 100 1000)")
    parser.add_argument("--references", type=int, default=3, help="the multi-reference gallery's (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="the draw of the enrolled LFW people")
    parser.add_argument("--draws", type=int, default=1, help="galleries drawn for each one-reference size, "
                        "seeds --seed and after: their mean, spread and range")
    parser.add_argument("--groups", type=int, nargs="*", default=[50, 500], metavar="G",
                        help="door groups of these sizes within the --group-gallery (none: skip)")
    parser.add_argument("--group-gallery", type=int, default=5000)
    parser.add_argument("--validation", action="store_true",
                        help="one-reference galleries of CelebA people, not LFW (no padding, groups or references)")
    args = parser.parse_args()

    normalised = Embedder.load(args.model, "cpu")
    plain = Embedder.load(args.model, "cpu")
    plain.cohort = None
    rules = {"distance": plain, "as-norm": normalised} if normalised.cohort else {"distance": plain}
    celeba = [embedded(plain, args.data / name, args.cache) for name in VALIDATION_SOURCES]
    # the photos the galleries, genuine probes and strangers are drawn from: LFW, or CelebA with --validation
    if args.validation:
        source_vectors = np.concatenate([v for v, _ in celeba])
        source_labels = np.concatenate([labels.astype(str) for _, labels in celeba])
        padding = np.empty((0, plain.dim), np.float32)
    else:
        source_vectors, source_labels = embedded(plain, args.data / "lfw-deepfunneled.tar", args.cache)
        padding = np.concatenate([v for v, _ in celeba])
    sizes = args.sizes or ([100, 1000] if args.validation else [100, 1000, 5000])
    groups, multi_references = ([], 0) if args.validation else (args.groups, args.references)
    photos = defaultdict(list)
    for row, label in enumerate(source_labels):
        photos[str(label)].append(row)

    def drawn(seed: int) -> list[str]:
        """The people with 2+ photos, in the random order of `seed`: a gallery enrolls the first."""
        people = sorted(p for p, rows in photos.items() if len(rows) >= 2)
        np.random.default_rng(seed).shuffle(people)
        return people

    enrollable = drawn(args.seed)
    if max(sizes) > len(enrollable) + len(padding):
        parser.error(f"--sizes: at most {len(enrollable) + len(padding)} (the people with 2+ photos, and the padding)")
    print(f"machine: {machine()}")
    cohort = normalised.cohort
    print(f"model {plain.model_id}, augment {plain.augment}; FPIR target {args.fpir:g}; cohort "
          f"{f'{len(cohort.vectors)} vectors, K={cohort.k}' if cohort else 'none'}; "
          f"{'CelebA (--validation)' if args.validation else 'LFW'}: {len(photos)} people with "
          f"a detected face, {len(enrollable)} with 2+ photos; padding: {len(padding)} CelebA photos")
    drawn_from = "CelebA" if args.validation else "LFW"
    print(f"{'refs':>4} {'gallery':>7} {'group':>5} {drawn_from:>5} {'pad':>5} {'rule':>8} {'threshold':>9} "
          f"{'strangers':>9} {'FPIR':>8} {'genuine':>7} {'rank-1':>7}")

    def report(references: int, ids: list[str], vectors: np.ndarray, drawn_people: int, pad: int,
               genuine_rows: list[int], stranger_rows: list[int], group: list[str] | None = None
               ) -> dict[str, tuple[float, float]]:
        """Prints a row for each rule, and returns {rule: (FPIR, rank-1)}."""
        truth = [str(source_labels[r]) for r in genuine_rows]
        measured = {}
        for rule, embedder in rules.items():
            threshold, fpir, rank1 = trial(embedder, args.fpir, ids, vectors, source_vectors[genuine_rows], truth,
                                           source_vectors[stranger_rows], group)
            measured[rule] = fpir, rank1
            print(f"{references:>4} {len(set(ids)):>7} {len(group) if group else '-':>5} {drawn_people:>5} {pad:>5} "
                  f"{rule:>8} {threshold:9.4f} {len(stranger_rows):>9} {fpir:8.2%} {len(genuine_rows):>7} "
                  f"{rank1:7.2%}", flush=True)
        return measured

    def one_each(size: int, order: list[str] = enrollable) -> tuple[list[str], np.ndarray, int, int]:
        """A gallery of `size`: one photo each of the first enrollable people in `order`, padded with CelebA."""
        people = order[:size]
        pad = padding[:size - len(people)]
        return ([*people, *(f"pad-{i}" for i in range(len(pad)))],
                np.concatenate([np.stack([source_vectors[photos[p][0]] for p in people]), pad]), len(people), len(pad))

    for size in sizes:
        draws, redrawn = defaultdict(list), args.draws > 1 and size < len(enrollable)
        for seed in range(args.seed, args.seed + (args.draws if redrawn else 1)):
            order = drawn(seed)
            ids, vectors, drawn_people, pad = one_each(size, order)
            enrolled = set(order[:size])
            for rule, figures in report(1, ids, vectors, drawn_people, pad,
                                        [r for p in order[:size] for r in photos[p][1:]],
                                        [r for p, rows in photos.items() if p not in enrolled for r in rows]).items():
                draws[rule].append(figures)
        if not redrawn:
            continue
        for rule, figures in draws.items():
            fpir, rank1 = (np.array(x) for x in zip(*figures, strict=True))
            print(f"{'':>4} {size:>7} {len(figures):>5} draws: {rule:>8}, FPIR mean {fpir.mean():.3%} (max "
                  f"{fpir.max():.2%}), rank-1 mean {rank1.mean():.2%} (sd {rank1.std(ddof=1):.2%}, "
                  f"{rank1.min():.2%}-{rank1.max():.2%})", flush=True)
    for g in groups:
        ids, vectors, drawn_people, pad = one_each(args.group_gallery)
        door = enrollable[:g]
        report(1, ids, vectors, drawn_people, pad, [r for p in door for r in photos[p][1:]],
               [r for p, rows in photos.items() if p not in set(door) for r in rows], group=door)
    if multi_references:
        r = multi_references
        people = sorted(p for p, rows in photos.items() if len(rows) > r)
        enrolled = set(people)
        report(r, [p for p in people for _ in range(r)],
               np.stack([source_vectors[row] for p in people for row in photos[p][:r]]),
               len(people), 0, [row for p in people for row in photos[p][r:]],
               [row for p, rows in photos.items() if p not in enrolled for row in rows])


if __name__ == "__main__":
    main()
