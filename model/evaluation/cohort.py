"""The decisions' calibration, on validation data only: the AS-norm cohort and its K, the 1:1 thresholds of fused
templates, and the impostor tail of normalised scores that the 1:N rule reads.

- The cohort is drawn from UTKFace: training-side, unlabelled, and a source that is neither the validation
  set (CelebA) nor the test set (LFW). A cohort drawn from the validation set's own source flatters it
  (measured: AS-norm's gain on CelebA with a CelebA cohort did not carry to LFW), so the choice of its size
  and K would be biased towards it.
- Size and K are chosen on CelebA open-set trials (`choose_cohort`): rank-1 at FPIR 1e-2 and 1e-3, averaged
  over random splits and over one-reference and three-reference (fused) galleries, so that one noisy cell
  does not decide.
- Fused templates change the impostor distances (a mean is a more average face), so the 1:1 threshold is
  calibrated per number of references (`template_thresholds`), on the CelebA-wild identities' photos, as the
  one-reference default is.
- The normalised impostor tail (`normalised_tail`) comes from every impostor pair among all the CelebA photos,
  as the distance tail does (model.evaluation.calibrate.impostor_tail).
LFW is never looked at here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.card.curves import FAR_LEVELS, threshold_at_far
from model.card.scores import Cohort, as_norm, fuse
from model.datasets.sources import detect_source
from model.evaluation.evaluate import embed_source, pipeline_config
from model.faces.embedder import Embedder

COHORT_SOURCE = "utkface.tar"
FPIRS = (1e-2, 1e-3)
# A normalised tail's level is kept only where at least this many impostor pairs pass it; below, the card's
# curve is extrapolated along its last segment (model.card.curves), stricter than the true tail. One or two
# pairs (as far_levels accepts for distances) made the fused templates' 1e-7 level noise.
MIN_TAIL_PAIRS = 10


def cohort_pool(embedder: Embedder, data_root: Path, cache: Path) -> np.ndarray:
    """Every UTKFace photo with a face, embedded, in a fixed random order: its first n rows are a random
    sample of n."""
    source = data_root / COHORT_SOURCE
    config = pipeline_config(embedder)
    faces = detect_source(source, cache=cache, labelled=False, config=config, with_teacher=False)
    vectors = embed_source(embedder, source, faces, config, cache)[faces.found]
    return vectors[np.random.default_rng(0).permutation(len(vectors))].astype(np.float32)


def people(labels: np.ndarray) -> dict[str, np.ndarray]:
    order = np.argsort(labels, kind="stable")
    names, starts = np.unique(labels[order], return_index=True)
    return dict(zip(names, np.split(order, starts[1:]), strict=True))


@dataclass(frozen=True)
class Trial:
    """An open-set trial: templates (people, d) fused from each enrolled person's first R photos, genuine
    probes with the row of their person, and strangers (every photo of the people not enrolled)."""

    templates: np.ndarray
    probes: np.ndarray
    truth: np.ndarray
    strangers: np.ndarray


def trial(vectors: np.ndarray, labels: np.ndarray, *, references: int, gallery: int, seed: int) -> Trial:
    """`gallery` people with more than `references` photos, at random, enrolled with their first `references`."""
    by_person = people(labels)
    names = np.random.default_rng(seed).permutation(sorted(by_person))
    enrolled = [p for p in names if len(by_person[p]) > references][:gallery]
    chosen = set(enrolled)
    templates = np.stack([fuse(vectors[by_person[p][:references]]) for p in enrolled])
    genuine = [(i, row) for i, p in enumerate(enrolled) for row in by_person[p][references:]]
    strangers = np.concatenate([by_person[p] for p in names if p not in chosen])
    return Trial(templates, vectors[[row for _, row in genuine]], np.array([i for i, _ in genuine]),
                 vectors[strangers])


def scores(queries: np.ndarray, templates: np.ndarray, cohort: Cohort | None) -> np.ndarray:
    """(queries, templates) cosine scores, AS-normalised when a cohort is given."""
    similarity = queries @ templates.T
    if cohort is None:
        return similarity
    template_mean, template_sd = cohort.stats(templates)
    probe_mean, probe_sd = cohort.stats(queries)
    return as_norm(similarity, template_mean[None], template_sd[None], probe_mean[:, None], probe_sd[:, None])


def rank1(t: Trial, cohort: Cohort | None) -> dict[float, float]:
    """{FPIR: rank-1} of the trial, plain or AS-normalised (open_set_rank1)."""
    return open_set_rank1(scores(t.probes, t.templates, cohort), t.truth,
                          scores(t.strangers, t.templates, cohort).max(axis=1))


def open_set_rank1(genuine: np.ndarray, truth: np.ndarray, stranger_best: np.ndarray,
                   decided: np.ndarray | None = None) -> dict[float, float]:
    """{FPIR: rank-1} from the genuine probes' scores against every template (higher is more alike), their
    templates, and each stranger's best score, at the threshold that lets that share of the trial's own
    strangers through: rules compared at equal false positives, whatever their calibration. `decided`: what
    each probe's decision compares with the threshold, where a rule decides by something other than the best
    score (then `stranger_best` is the strangers' same value)."""
    named, best = genuine.argmax(axis=1), genuine.max(axis=1) if decided is None else decided
    out = {}
    for fpir in FPIRS:
        threshold = np.quantile(stranger_best, 1 - fpir, method="higher")
        out[fpir] = float(((named == truth) & (best > threshold)).mean())
    return out


def choose_cohort(pool: np.ndarray, vectors: np.ndarray, labels: np.ndarray, *, sizes: list[int], ks: list[int],
                  seeds: int = 5, gallery: int = 1000) -> tuple[int, int, list[dict]]:
    """(size, K, every row measured): the cohort size and K with the best mean rank-1 over FPIR 1e-2 and 1e-3,
    one-reference and three-reference galleries, and `seeds` random splits of the CelebA identities. The
    plain scores are the first row."""
    trials = {r: [trial(vectors, labels, references=r, gallery=gallery, seed=s) for s in range(seeds)]
              for r in (1, 3)}

    def measure(cohort: Cohort | None) -> dict:
        row = {}
        for r, ts in trials.items():
            results = [rank1(t, cohort) for t in ts]
            for fpir in FPIRS:
                row[f"R={r} FPIR {fpir:g}"] = float(np.mean([x[fpir] for x in results]))
        row["mean"] = float(np.mean(list(row.values())))
        return row

    rows = [{"size": 0, "k": 0, **measure(None)}]
    for size in sizes:
        for k in ks:
            if k < size:
                rows.append({"size": size, "k": k, **measure(Cohort(pool[:size], k))})
    best = max(rows[1:], key=lambda row: row["mean"])
    return best["size"], best["k"], rows


def score_threshold_at_far(impostor_scores: np.ndarray, far: float) -> float:
    """The lowest score at which (accepting score >= threshold) at most `far` of impostors pass."""
    return -threshold_at_far(-impostor_scores, far)


def tail_levels(impostor_scores: np.ndarray) -> dict[str, float]:
    """{FAR: score threshold} at each of FAR_LEVELS that at least MIN_TAIL_PAIRS impostor pairs measure."""
    return {f"{far:g}": score_threshold_at_far(impostor_scores, far) for far in FAR_LEVELS
            if far * len(impostor_scores) >= MIN_TAIL_PAIRS}


def normalised_impostors(vectors: np.ndarray, labels: np.ndarray, cohort: Cohort, chunk: int = 1024) -> np.ndarray:
    """The AS-norm score of every impostor pair among the photos (each pair once)."""
    mean, sd = cohort.stats(vectors)
    impostor = []
    for start in range(0, len(vectors), chunk):
        end = min(start + chunk, len(vectors))
        s = as_norm(vectors[start:end] @ vectors.T, mean[None], sd[None], mean[start:end, None], sd[start:end, None])
        later = np.arange(len(vectors))[None, :] > np.arange(start, end)[:, None]
        impostor.append(s[later & (labels[None, :] != labels[start:end, None])].astype(np.float32))
    return np.concatenate(impostor)


def normalised_tail(vectors: np.ndarray, labels: np.ndarray, cohort: Cohort) -> dict:
    """{FAR: score threshold} of AS-norm scores over every impostor pair among the photos, down to what their
    number measures (1e-6 for the 28M pairs among all the CelebA photos)."""
    impostor = normalised_impostors(vectors, labels, cohort)
    return {
        "far_levels": tail_levels(impostor),
        "impostor_pairs": int(len(impostor)),
    }


def template_impostors(vectors: np.ndarray, labels: np.ndarray, people_rows: dict[str, np.ndarray], references: int,
                       per_person: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fused templates of `references` random photos of each person (`per_person` draws each), with the
    distances of each to its person's other photos (genuine) and to every photo of other people (impostor),
    and the templates themselves."""
    genuine, impostor, templates = [], [], []
    for person, rows in people_rows.items():
        if len(rows) <= references:
            continue
        for _ in range(per_person):
            chosen = rng.choice(len(rows), references, replace=False)
            template = fuse(vectors[rows[chosen]])
            distances = np.sqrt(np.clip(2 - 2 * vectors @ template, 0, None))
            others = np.setdiff1d(rows, rows[chosen])
            genuine.append(distances[others])
            impostor.append(distances[labels != person])
            templates.append(template)
    return np.concatenate(genuine), np.concatenate(impostor), np.stack(templates)


def template_thresholds(vectors: np.ndarray, labels: np.ndarray, *, wild_people: set[str], max_references: int,
                        far: float = 1e-3, per_person: int = 20) -> dict:
    """The 1:1 threshold at `far` for templates fused from 1 to `max_references` photos of the CelebA-wild
    identities, against every CelebA photo of other people; with the genuine accept rate there, and each
    kind's distance tail (for the 1:N rule by distance, when no cohort decides)."""
    people_rows = {p: rows for p, rows in people(labels).items() if p in wild_people}
    rng = np.random.default_rng(0)
    levels, tar, pairs, tails = {}, {}, {}, {}
    for references in range(1, max_references + 1):
        genuine, impostor, _ = template_impostors(vectors, labels, people_rows, references, per_person, rng)
        threshold = threshold_at_far(impostor, far)
        levels[str(references)] = threshold
        tar[str(references)] = float((genuine <= threshold).mean())
        pairs[str(references)] = {"genuine": int(len(genuine)), "impostor": int(len(impostor))}
        tails[str(references)] = {f"{f:g}": threshold_at_far(impostor, f) for f in FAR_LEVELS
                                  if f * len(impostor) >= MIN_TAIL_PAIRS}
    return {"levels": levels, "tar": tar, "pairs": pairs, "far_levels": tails}


def fused_normalised_tail(vectors: np.ndarray, labels: np.ndarray, cohort: Cohort, single: dict[str, float], *,
                          wild_people: set[str], references: int, per_person: int = 20) -> dict:
    """The normalised impostor tail of templates fused from `references` photos (of the CelebA-wild identities,
    `per_person` random draws each, against every CelebA photo of other people), and the FAR that the
    one-photo tail's thresholds (`single`) give them: a fused template's scores spread differently, so one tail
    does not hold its FAR for every kind."""
    people_rows = {p: rows for p, rows in people(labels).items() if p in wild_people}
    rng = np.random.default_rng(1)
    mean, sd = cohort.stats(vectors)
    impostor = []
    for person, rows in people_rows.items():
        if len(rows) <= references:
            continue
        others = labels != person
        for _ in range(per_person):
            template = fuse(vectors[rows[rng.choice(len(rows), references, replace=False)]])
            t_mean, t_sd = cohort.stats(template[None])
            impostor.append(as_norm(vectors[others] @ template, t_mean[0], t_sd[0], mean[others], sd[others])
                            .astype(np.float32))
    impostor = np.concatenate(impostor)
    return {
        "far_levels": tail_levels(impostor),
        "impostor_pairs": int(len(impostor)),
        "far_at_single_levels": {far: float((impostor >= threshold).mean()) for far, threshold in single.items()},
    }
