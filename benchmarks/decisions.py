"""How the decisions could use what the network gives, chosen on validation data and then reported on LFW:
the template rule (the nearest of an employee's references, or their L2-normalised mean) and adaptive score
normalisation (AS-norm against a cohort, K chosen here). Issue #21's levers, measured before they are built.

    python -m benchmarks.decisions [--cache DIR] [--celeba-cohort [--splits 5] [--ks 25 50 100 200 400]]
    python -m benchmarks.decisions --whiten [--alphas 0 0.15 0.25 0.35 0.5 1] [--ks 100 200 400]
    python -m benchmarks.decisions --margin [--betas 0.15 0.25 0.35] [--margin-splits 20] [--margin-fpir 1e-3]

With a model that ships a cohort (model.release.cohort chose it and its K on CelebA), the LFW table is made
with that cohort: each lever's share at equal FPIR. `--celeba-cohort` repeats the study made before it shipped.

Every figure is an open-set trial: a gallery of enrolled people (their first R photos), genuine probes (their
other photos) and strangers (every photo of people not enrolled). Rank-1 counts a genuine probe whose best
score is their own person's and above the threshold; the threshold is read off the trial's own strangers at
the FPIR asked, so each rule is compared at equal false positives, whatever its calibration. (Calibrating a
chosen rule's threshold is the service's job, on CelebA, as the card's impostor tail is.)

- Validation: CelebA, both archives. Identities are split at random into a cohort (one photo each), the
  enrolled and the strangers, `--splits` times; figures are the mean and the spread over splits.
- Test: LFW. The cohort is CelebA (one photo per identity): vectors only, no LFW photo in it.

`--whiten` measures a lever that was tried and not built (docs/decisions.md): every vector centred on the
model's cohort and its principal axes rescaled by lambda^(-alpha/2) (alpha 0: centring only, 1: full whitening)
before the cosine, the cohort transformed alike; alpha and K chosen on CelebA as the cohort was
(model.evaluation.cohort.choose_cohort's trials and mean), then LFW's tables: as shipped, with the chosen K
alone, and whitened with it.

`--margin` measures another lever tried and not built: deciding 1:N by the best score less beta times the
second best (study_margin): beta chosen on CelebA at equal FPIR, then calibrated by order statistics of CelebA's
impostor scores and measured on CelebA and LFW at those thresholds.

AS-norm: s' = ((s - mu_t) / sd_t + (s - mu_p) / sd_p) / 2, where mu and sd are the mean and the standard
deviation of the K highest cosine scores of the template (t) and of the probe (p) against the cohort.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import DATA, machine
from benchmarks.identify import embedded
from model.card.scores import Cohort
from model.datasets.sources import DEFAULT_CACHE, VALIDATION_SOURCES
from model.evaluation import cohort as validation
from model.evaluation.cohort import FPIRS, open_set_rank1
from model.faces.embedder import DEFAULT_MODEL, Embedder


@dataclass(frozen=True)
class Faces:
    vectors: np.ndarray  # (n, d) unit vectors
    labels: np.ndarray  # identity of each

    def people(self) -> dict[str, list[int]]:
        rows: dict[str, list[int]] = defaultdict(list)
        for row, label in enumerate(self.labels):
            rows[str(label)].append(row)
        return dict(rows)


@dataclass(frozen=True)
class Trial:
    references: np.ndarray  # (people, R, d): each enrolled person's first R photos
    probes: np.ndarray  # (genuine, d)
    truth: np.ndarray  # (genuine,) the enrolled person of each probe
    strangers: np.ndarray  # (strangers, d)


def trial(faces: Faces, enrolled: list[str], strangers: list[str], references: int) -> Trial:
    people = faces.people()
    refs = np.stack([faces.vectors[people[p][:references]] for p in enrolled])
    genuine = [(i, row) for i, p in enumerate(enrolled) for row in people[p][references:]]
    stranger_rows = [row for p in strangers for row in people[p]]
    return Trial(refs, faces.vectors[[row for _, row in genuine]], np.array([i for i, _ in genuine]),
                 faces.vectors[stranger_rows])


def normalised(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def person_scores(queries: np.ndarray, references: np.ndarray, rule: str, cohort: np.ndarray | None,
                  k: int) -> np.ndarray:
    """(queries, people) scores: each person's references fused by `rule`, AS-normalised when a cohort is given."""
    templates = normalised(references.mean(axis=1))[:, None] if rule == "mean" else references  # (P, R', d)
    scores = np.einsum("qd,prd->qpr", queries, templates)
    if cohort is not None:
        stats = Cohort(cohort, k).stats
        mu_t, sd_t = (x.reshape(templates.shape[:-1]) for x in stats(templates.reshape(-1, templates.shape[-1])))
        mu_q, sd_q = stats(queries)  # (Q,)
        scores = 0.5 * ((scores - mu_t[None]) / sd_t[None] + (scores - mu_q[:, None, None]) / sd_q[:, None, None])
    return scores.max(axis=2)


def rank1(t: Trial, rule: str, cohort: np.ndarray | None = None, k: int = 0) -> dict[float, float]:
    """{FPIR: rank-1 at the threshold that lets that share of the trial's strangers through}."""
    return open_set_rank1(person_scores(t.probes, t.references, rule, cohort, k), t.truth,
                          person_scores(t.strangers, t.references, rule, cohort, k).max(axis=1))


def splits(faces: Faces, *, seeds: int, cohort_size: int, gallery: int, references: int
           ) -> list[tuple[np.ndarray, Trial]]:
    """`seeds` random splits of the identities into a cohort (one photo each, taken from the identities with the
    fewest photos, who could not be enrolled with references anyway), `gallery` enrolled people (with
    `references` + 1 photos or more) and strangers (everyone else)."""
    people = faces.people()
    out = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        ids = sorted(people)
        rng.shuffle(ids)
        ids.sort(key=lambda p: len(people[p]))  # stable: shuffled within each photo count
        cohort_ids, rest = ids[:cohort_size], ids[cohort_size:]
        rng.shuffle(rest)
        enrollable = [p for p in rest if len(people[p]) > references][:gallery]
        strangers = [p for p in rest if p not in set(enrollable)]
        cohort = faces.vectors[[people[p][0] for p in cohort_ids]]
        out.append((cohort, trial(faces, enrollable, strangers, references)))
    return out


def figure(values: list[float]) -> str:
    return f"{100 * np.mean(values):5.1f} ± {100 * np.std(values):3.1f}"


def validation_k(faces: Faces, args: argparse.Namespace) -> int:
    """AS-norm's K for one reference, chosen on CelebA: the best mean rank-1 at FPIR 1e-3 over the splits."""
    people = faces.people()
    gallery = min(1000, sum(len(rows) > 1 for rows in people.values()) // 2)
    trials = splits(faces, seeds=args.splits, cohort_size=args.cohort, gallery=gallery, references=1)
    print(f"\nvalidation (CelebA), one reference: {gallery} enrolled, cohort {args.cohort}, {args.splits} splits "
          f"(about {len(trials[0][1].probes)} genuine probes and {len(trials[0][1].strangers)} strangers each)")
    print(f"{'scores':<18}" + "".join(f"{'rank-1 @ FPIR ' + format(f, 'g'):>22}" for f in FPIRS))
    rows = {"plain": [rank1(t, "nearest") for _, t in trials]}
    for k in args.ks:
        rows[f"AS-norm K={k}"] = [rank1(t, "nearest", cohort, k) for cohort, t in trials]
    for name, results in rows.items():
        print(f"{name:<18}" + "".join(f"{figure([r[f] for r in results]):>22}" for f in FPIRS))
    best = max(args.ks, key=lambda k: np.mean([r[1e-3] for r in rows[f"AS-norm K={k}"]]))
    print(f"chosen: K = {best}")
    return best


def validation_rules(faces: Faces, k: int, args: argparse.Namespace) -> None:
    """Nearest reference against the fused mean, with 1, 2 and 3 references, plain and AS-normalised."""
    print(f"\nvalidation (CelebA), people with 4+ photos, their first R enrolled; AS-norm K={k}")
    print(f"{'R':>2} {'rule':<8} {'scores':<8} {'enrolled':>8}" + "".join(f"{'rank-1 @ ' + format(f, 'g'):>18}"
                                                                        for f in FPIRS))
    for references in (1, 2, 3):
        # enrolled with 3 references' worth of photos, so that 1, 2 and 3 references meet the same camera photos
        trials = [(cohort, Trial(t.references[:, :references], t.probes, t.truth, t.strangers))
                  for cohort, t in splits(faces, seeds=args.splits, cohort_size=args.cohort, gallery=10_000,
                                          references=3)]
        for rule in ("nearest", "mean") if references > 1 else ("nearest",):
            for norm in ("plain", "AS-norm"):
                results = [rank1(t, rule, cohort if norm == "AS-norm" else None, k) for cohort, t in trials]
                print(f"{references:>2} {rule:<8} {norm:<8} {len(trials[0][1].references):>8}"
                      + "".join(f"{figure([r[f] for r in results]):>18}" for f in FPIRS))


def test_on_lfw(lfw: Faces, cohort: np.ndarray, k: int) -> None:
    people = lfw.people()
    many = sorted(p for p, rows in people.items() if len(rows) >= 4)
    two = sorted(p for p, rows in people.items() if len(rows) >= 2)
    print(f"\ntest (LFW), cohort of {len(cohort)} vectors, AS-norm K={k}")
    print(f"{'R':>2} {'rule':<8} {'scores':<8} {'enrolled':>8}" + "".join(f"{'rank-1 @ ' + format(f, 'g'):>18}"
                                                                        for f in FPIRS))
    rng = np.random.default_rng(0)
    rng.shuffle(two)
    for size in (100, 1000):
        enrolled = two[:size]
        t = trial(lfw, enrolled, [p for p in people if p not in set(enrolled)], 1)
        for norm in ("plain", "AS-norm"):
            r = rank1(t, "nearest", cohort if norm == "AS-norm" else None, k)
            print(f"{1:>2} {'nearest':<8} {norm:<8} {size:>8}" + "".join(f"{100 * r[f]:17.1f}%" for f in FPIRS))
    full = trial(lfw, many, [p for p in people if p not in set(many)], 3)
    for references in (1, 2, 3):
        t = Trial(full.references[:, :references], full.probes, full.truth, full.strangers)
        for rule in ("nearest", "mean") if references > 1 else ("nearest",):
            for norm in ("plain", "AS-norm"):
                r = rank1(t, rule, cohort if norm == "AS-norm" else None, k)
                print(f"{references:>2} {rule:<8} {norm:<8} {len(many):>8}"
                      + "".join(f"{100 * r[f]:17.1f}%" for f in FPIRS))


def whitening(pool: np.ndarray, alpha: float) -> Callable[[np.ndarray], np.ndarray]:
    """x -> (x - m) V diag(lambda^(-alpha/2)), L2-normalised: m, V and lambda the pool's mean, principal axes and
    variances, over the axes with at least a thousandth of the largest variance (the shipped model's cohort has
    77 such of its 128; the next holds 1.2e-4 of it, the rest under 3e-5)."""
    pool = pool.astype(np.float64)
    mean = pool.mean(axis=0)
    variances, axes = np.linalg.eigh(np.cov((pool - mean).T))
    kept = variances > 1e-3 * variances.max()
    projection = axes[:, kept] * variances[kept] ** (-alpha / 2)
    return lambda x: normalised((np.asarray(x, np.float64) - mean) @ projection).astype(np.float32)


def study_whitening(celeba: Faces, lfw: Faces, cohort: Cohort, args: argparse.Namespace) -> None:
    """Choose alpha and K on CelebA (the mean rank-1 over FPIR 1e-2 and 1e-3, one and three references, 5
    splits of 1,000 enrolled), then LFW's tables: as shipped, with the chosen K alone, and whitened with it."""
    references, seeds = (1, 3), range(5)
    print(f"\nvalidation (CelebA): 1,000 enrolled, 5 splits, {len(cohort.vectors)} cohort vectors transformed alike; "
          "rank-1 at FPIR 1e-2 / 1e-3, AS-norm")
    rows = []
    for alpha in [None, *args.alphas]:
        transform = (lambda x: x) if alpha is None else whitening(cohort.vectors, alpha)
        vectors = transform(celeba.vectors)
        trials = {(r, s): validation.trial(vectors, celeba.labels, references=r, gallery=1000, seed=s)
                  for r in references for s in seeds}
        for k in args.ks:
            transformed = Cohort(transform(cohort.vectors), k)
            results = {key: validation.rank1(t, transformed) for key, t in trials.items()}
            means = [float(np.mean([results[r, s][f] for s in seeds])) for r in references for f in FPIRS]
            rows.append((float(np.mean(means)), alpha, k))
            print(f"{'shipped (none)' if alpha is None else f'alpha {alpha:g}':<15} K={k:<4}"
                  + "".join(f"  R={r} {100 * means[2 * i]:4.1f} / {100 * means[2 * i + 1]:4.1f}"
                            for i, r in enumerate(references)) + f"   mean {100 * rows[-1][0]:.2f}", flush=True)
    _, alpha, k = max((row for row in rows if row[1] is not None), key=lambda row: row[0])
    print(f"chosen: alpha {alpha:g}, K = {k}")
    print("\nLFW: as shipped; with the chosen K alone; whitened, with the chosen K")
    test_on_lfw(lfw, cohort.vectors, cohort.k)
    if k != cohort.k:
        test_on_lfw(lfw, cohort.vectors, k)
    transform = whitening(cohort.vectors, alpha)
    test_on_lfw(Faces(transform(lfw.vectors), lfw.labels), transform(cohort.vectors), k)


def best_two(scores: np.ndarray) -> np.ndarray:
    """(queries, 2): each query's best and second-best score."""
    return -np.sort(-np.partition(scores, -2, axis=1)[:, -2:], axis=1)


def margin_rank1(t: validation.Trial, cohort: Cohort, beta: float, threshold: float | None = None
                 ) -> tuple[dict[float, float], float]:
    """({FPIR: rank-1}, FPIR at `threshold`) deciding by s1 - beta * s2 (AS-norm scores; s2 0 when there is one
    template): at each FPIR's threshold read off the trial's own strangers, and at a calibrated `threshold`."""
    genuine, strangers = (validation.scores(x, t.templates, cohort) for x in (t.probes, t.strangers))

    def feature(scores: np.ndarray) -> np.ndarray:
        top = best_two(scores) if scores.shape[1] > 1 else np.pad(scores, ((0, 0), (0, 1)))
        return top[:, 0] - beta * top[:, 1]

    decided, stranger_decided = feature(genuine), feature(strangers)
    at_fpir: dict = open_set_rank1(genuine, t.truth, stranger_decided, decided)
    if threshold is None:
        return at_fpir, float("nan")
    at_fpir["calibrated"] = float(((genuine.argmax(axis=1) == t.truth) & (decided >= threshold)).mean())
    return at_fpir, float((stranger_decided >= threshold).mean())


def margin_threshold(impostors: np.ndarray, gallery: int, beta: float, fpir: float, draws: int = 2_000_000) -> float:
    """The threshold on s1 - beta * s2 that lets `fpir` of strangers through a gallery of `gallery` templates, if
    a stranger's scores against them were independent draws from `impostors` (sorted): the two best of N
    uniforms drawn directly (U1 = V1^(1/N), U2 = U1 V2^(1/(N-1))) and read through the impostors' quantiles.
    With beta 0 it is the service's rule, FPIR = 1 - (1 - f)^N, read off the same empirical tail."""
    rng = np.random.default_rng(0)
    u1 = rng.random(draws) ** (1 / gallery)
    u2 = u1 * rng.random(draws) ** (1 / max(gallery - 1, 1))

    def quantile(u: np.ndarray) -> np.ndarray:
        return impostors[np.minimum((u * len(impostors)).astype(np.int64), len(impostors) - 1)]

    second = quantile(u2) if gallery > 1 else 0.0
    return float(np.quantile(quantile(u1) - beta * second, 1 - fpir))


def padded(t: validation.Trial, padding: np.ndarray, gallery: int) -> validation.Trial:
    """The trial's gallery padded to `gallery` templates with `padding` (strangers to every probe)."""
    extra = padding[:max(0, gallery - len(t.templates))]
    return validation.Trial(np.concatenate([t.templates, extra]), t.probes, t.truth, t.strangers)


def study_margin(celeba: Faces, lfw: Faces, cohort: Cohort, args: argparse.Namespace) -> None:
    """The open-set margin lever (docs/decisions.md, not built): decide by the best AS-norm score less beta times
    the second best, since a stranger's best stands out from their second less than an enrolled person's does.
    Beta chosen on CelebA at equal FPIR (paired with beta 0 over the same splits); then whether the gain
    survives calibration: thresholds from the order statistics of CelebA's impostor scores, measured on CelebA
    and on LFW (padded with CelebA as benchmarks.identify does at 5,000)."""
    cells = [(1, 100), (1, 1000), (3, 300)]
    seeds = range(args.margin_splits)
    print(f"\nvalidation (CelebA): rank-1 at equal FPIR 1e-2 / 1e-3 deciding by s1 - beta * s2, AS-norm (the model's "
          f"cohort, K={cohort.k}); {len(seeds)} splits, each gain paired with beta 0 on the same split")
    trials = {cell: [validation.trial(celeba.vectors, celeba.labels, references=cell[0], gallery=cell[1], seed=s)
                     for s in seeds] for cell in cells}
    results = {(cell, beta): [margin_rank1(t, cohort, beta)[0] for t in ts]
               for cell, ts in trials.items() for beta in [0.0, *args.betas]}
    means = {}
    for beta in args.betas:
        gains = []
        line = f"beta {beta:<5g}"
        for cell in cells:
            for fpir in FPIRS:
                gain = np.array([x[fpir] - y[fpir] for x, y in zip(results[cell, beta], results[cell, 0.0],
                                                                   strict=True)])
                gains.append(gain.mean())
                line += (f"  R={cell[0]} N={cell[1]} @{fpir:g} {100 * gain.mean():+.1f} "
                         f"(se {100 * gain.std(ddof=1) / np.sqrt(len(gain)):.1f})")
        means[beta] = float(np.mean(gains))
        print(line + f"   mean {100 * means[beta]:+.2f}", flush=True)
    beta = max(means, key=means.get)
    print(f"chosen: beta {beta:g}")
    impostors = np.sort(validation.normalised_impostors(celeba.vectors, celeba.labels, cohort))
    print(f"\ncalibrated: FPIR target {args.margin_fpir:g}, thresholds from {len(impostors):,} CelebA impostor "
          "pairs' order statistics; one reference; FPIR and rank-1 at those thresholds (10 draws, mean)")
    print(f"{'set':<7} {'gallery':>7} {'beta':>5} {'threshold':>9} {'FPIR':>8} {'FPIR max':>8} {'rank-1':>7}")
    for name, faces, sizes, padding in (("CelebA", celeba, (100, 1000), None),
                                        ("LFW", lfw, (100, 1000, 5000), celeba.vectors)):
        enrollable = sum(len(rows) > 1 for rows in validation.people(faces.labels).values())
        for size in sizes:
            # a gallery of every enrollable person (padded) is the same whatever the draw: measured once
            draws = [validation.trial(faces.vectors, faces.labels, references=1, gallery=size, seed=s)
                     for s in range(10 if size < enrollable else 1)]
            if padding is not None:
                draws = [padded(t, padding, size) for t in draws]
            for b in (0.0, beta):
                threshold = margin_threshold(impostors, len(draws[0].templates), b, args.margin_fpir)
                measured = [margin_rank1(t, cohort, b, threshold) for t in draws]
                fpir = np.array([f for _, f in measured])
                print(f"{name:<7} {len(draws[0].templates):>7} {b:>5g} {threshold:9.3f} {fpir.mean():8.3%} "
                      f"{fpir.max():8.3%} {np.mean([r['calibrated'] for r, _ in measured]):7.2%}", flush=True)


def load(embedder: Embedder, names: tuple[str, ...], data: Path, cache: Path) -> Faces:
    parts = [embedded(embedder, data / name, cache) for name in names]
    return Faces(np.concatenate([v for v, _ in parts]).astype(np.float32),
                 np.concatenate([labels.astype(str) for _, labels in parts]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--cohort", type=int, default=800, help="validation cohort: identities, one photo each")
    parser.add_argument("--ks", type=int, nargs="+", default=[25, 50, 100, 200, 400])
    parser.add_argument("--whiten", action="store_true", help="the whitening study (not built)")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0, 0.15, 0.25, 0.35, 0.5, 1])
    parser.add_argument("--margin", action="store_true", help="the best-less-second-best study (not built)")
    parser.add_argument("--betas", type=float, nargs="+", default=[0.15, 0.25, 0.35])
    parser.add_argument("--margin-splits", type=int, default=20)
    parser.add_argument("--margin-fpir", type=float, default=1e-3)
    parser.add_argument("--celeba-cohort", action="store_true",
                        help="the study before the cohort shipped: a CelebA cohort, K chosen on CelebA")
    args = parser.parse_args()
    embedder = Embedder.load(args.model, "cpu")
    celeba = load(embedder, VALIDATION_SOURCES, args.data, args.cache)
    lfw = load(embedder, ("lfw-deepfunneled.tar",), args.data, args.cache)
    print(f"machine: {machine()}")
    print(f"model {embedder.model_id}, augment {embedder.augment}; CelebA: {len(celeba.vectors)} faces of "
          f"{len(celeba.people())} identities; LFW: {len(lfw.vectors)} faces of {len(lfw.people())} people")
    if args.whiten or args.margin:
        (study_whitening if args.whiten else study_margin)(celeba, lfw, embedder.cohort, args)
        return
    if embedder.cohort is not None and not args.celeba_cohort:
        # the shipped cohort: chosen, with its K, on CelebA by model.release.cohort
        print(f"the model's cohort: {len(embedder.cohort.vectors)} UTKFace vectors, K={embedder.cohort.k}")
        test_on_lfw(lfw, embedder.cohort.vectors, embedder.cohort.k)
        return
    k = validation_k(celeba, args)
    validation_rules(celeba, k, args)
    cohort_ids = np.random.default_rng(0).permutation(sorted(celeba.people()))[:args.cohort]
    test_on_lfw(lfw, celeba.vectors[[celeba.people()[p][0] for p in cohort_ids]], k)


if __name__ == "__main__":
    main()
