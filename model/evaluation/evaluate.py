"""Evaluate an embedder on face pairs, through the service's own pipeline.

    python -m model.evaluation lfw --data ../shared/data/lfw-deepfunneled.tar \
        --pairs ../shared/data/lfw-pairs.txt [--model model/weights/facegate-resnet.pt] \
        [--augment none|flip|views] [--policy centre|dominant|reject] [--json] [--reference dlib] [--plot roc.png]
    python -m model.evaluation pairs --data ROOT --pairs FILE     # lines: pathA<TAB>pathB<TAB>same

The protocol is LFW View 2's: 10-fold accuracy with the threshold chosen on the other nine folds, EER, TAR
at FAR 1e-2 and 1e-3, and ROC AUC. Detection, alignment and embedding are the service's (one PipelineConfig,
one `prepare`); the augmentation defaults to the one the model card says the model serves with.

Which face: the service's own policy (`--policy dominant`, the default): a photo whose two largest faces
are of similar size is refused, as /verify refuses it. A refused photo, like one without a face, cannot
match anyone. Two sets of figures follow, as ISO/IEC 19795-1 reports them: over every pair, where a pair
with a refused photo counts as "different" (what a door does with them), and over the pairs whose two
photos were accepted, beside the failure-to-acquire rate (the share of photos refused). `--policy centre`
takes the face nearest the photo's centre instead, the research protocol (LFW is framed on its labelled
person), for figures comparable with published ones.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from model.card.scores import Cohort, as_norm
from model.datasets.sources import (
    DEFAULT_CACHE,
    FaceSet,
    Pair,
    cache_key,
    detect_source,
    iter_chips,
    read_generic_pairs,
    read_lfw_pairs,
    source_id,
    without_root,
)
from model.evaluation.metrics import VerificationReport, roc, verification_report
from model.faces.config import (
    AUGMENTS,
    DATASET_POLICY,
    DEFAULT_MODEL,
    PRECISIONS,
    SERVICE_POLICY,
    FacePolicy,
    PipelineConfig,
)
from model.faces.embedder import Embedder

log = logging.getLogger(__name__)


@dataclass
class PairSet:
    """The pairs, each side an index into the source's photos."""

    pairs: list[Pair]
    index_a: np.ndarray
    index_b: np.ndarray
    same: np.ndarray
    folds: np.ndarray
    found: np.ndarray  # per photo

    @property
    def no_face(self) -> int:
        """Photos in the pairs without a usable face (none found, or refused by the policy)."""
        return int((~self.found[self.used]).sum())

    @property
    def used(self) -> np.ndarray:
        return np.union1d(self.index_a, self.index_b)

    @property
    def acquired(self) -> np.ndarray:
        """Per pair: both photos have a face."""
        return self.found[self.index_a] & self.found[self.index_b]


def euclidean_pair_distances(vectors: np.ndarray, pairs: PairSet) -> np.ndarray:
    d = np.linalg.norm(vectors[pairs.index_a] - vectors[pairs.index_b], axis=1)
    missing = ~(pairs.found[pairs.index_a] & pairs.found[pairs.index_b])
    return np.where(missing, np.inf, d)


def normalised_pair_distances(vectors: np.ndarray, pairs: PairSet, cohort: Cohort) -> np.ndarray:
    """Minus each pair's AS-norm score against the model's cohort (lower is more alike, as for distances), the
    score the service decides by; infinite where a photo has no face."""
    a, b = vectors[pairs.index_a], vectors[pairs.index_b]
    (mean_a, sd_a), (mean_b, sd_b) = cohort.stats(a), cohort.stats(b)
    score = as_norm(np.einsum("nd,nd->n", a, b), mean_a, sd_a, mean_b, sd_b)
    missing = ~(pairs.found[pairs.index_a] & pairs.found[pairs.index_b])
    return np.where(missing, np.inf, -score)


def pipeline_config(embedder: Embedder, base: PipelineConfig | None = None) -> PipelineConfig:
    """The pipeline settings (the service's defaults, or `base`) with the embedder's chip geometry."""
    return replace(base or PipelineConfig(), crop_size=embedder.input_size, chip=embedder.card.preprocess)


def index_pairs(faces: FaceSet, pairs: list[Pair], source: Path) -> PairSet:
    names = without_root(faces.paths)
    position = {name: i for i, name in enumerate(names)}
    missing = sorted({p for pair in pairs for p in (pair.a, pair.b) if p not in position})
    if missing:
        raise SystemExit(f"{len(missing)} photos named in the pairs are not in {source}, e.g. {missing[0]}")
    return PairSet(pairs, np.array([position[p.a] for p in pairs]), np.array([position[p.b] for p in pairs]),
                   np.array([p.same for p in pairs]), np.array([p.fold for p in pairs]), faces.found)


def embed_source(embedder: Embedder, source: Path, faces: FaceSet, config: PipelineConfig, cache: Path) -> np.ndarray:
    """Embeddings of every detected face of the source, with the embedder's views; zeros where none was found.

    Cached on disk by model, augmentation, chip and detections: evaluation, calibration and the benchmarks
    embed the same photos.
    """
    key = cache_key(source_id(source), embedder.model_id, embedder.augment, config.chip, config.crop_size,
                    *([embedder.arithmetic] if embedder.precision in ("bf16", "int8") else []),
                    hashlib.sha256(faces.landmarks.tobytes() + faces.found.tobytes()).hexdigest())
    target = cache / f"{source.name.split('.')[0]}-embeddings-{key}.npy"
    if target.exists():
        return np.load(target)
    vectors = np.zeros((len(faces), embedder.dim), np.float32)
    for rows, chips in iter_chips(source, faces, config, views=embedder.views.to_align):
        vectors[rows] = embedder.embed(chips)
    target.parent.mkdir(parents=True, exist_ok=True)
    np.save(target, vectors)
    return vectors


@dataclass
class Evaluation:
    ours: VerificationReport
    reference: VerificationReport | None
    distances: dict[str, np.ndarray]  # per pair, by embedder name, plus "same"
    faces: FaceSet  # every photo of the source, with its detection
    vectors: np.ndarray  # our embedding of each photo (zeros where no face was found)
    acquired: VerificationReport  # ours, over the pairs whose two photos have a face
    failure_to_acquire: float  # the share of the pairs' photos without a usable face


def evaluate(source: Path, pairs: list[Pair], embedder: Embedder, *, cache: Path, reference: bool = False,
             config: PipelineConfig | None = None, policy: FacePolicy = SERVICE_POLICY) -> Evaluation:
    """`config`: the detection settings (default: the service's); the chip is always the embedder's."""
    config = pipeline_config(embedder, config)
    faces = detect_source(source, cache=cache, with_teacher=reference, config=config, policy=policy)
    pair_set = index_pairs(faces, pairs, source)
    vectors = embed_source(embedder, source, faces, config, cache)
    distances = {"facegate": euclidean_pair_distances(vectors, pair_set)}
    ours = verification_report(distances["facegate"], pair_set.same, pair_set.folds, no_face=pair_set.no_face)
    ok = pair_set.acquired
    acquired = verification_report(distances["facegate"][ok], pair_set.same[ok], pair_set.folds[ok], no_face=0)
    if embedder.cohort is not None:
        distances["facegate as-norm"] = normalised_pair_distances(vectors, pair_set, embedder.cohort)
    theirs = None
    if reference:
        # face_recognition compares dlib's raw (unnormalised) descriptors by Euclidean distance.
        distances["dlib"] = euclidean_pair_distances(faces.teacher, pair_set)
        theirs = verification_report(distances["dlib"], pair_set.same, pair_set.folds, no_face=pair_set.no_face)
    distances["same"] = pair_set.same
    return Evaluation(ours, theirs, distances, faces, vectors, acquired,
                      failure_to_acquire=pair_set.no_face / len(pair_set.used))


def plot_curves(distances: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    same = distances["same"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, d in distances.items():
        if name == "same":
            continue
        far, tar, _ = roc(d, same)
        left.plot(far, tar, label=name)
        right.plot(np.clip(far, 1e-4, 1), np.clip(1 - tar, 1e-4, 1), label=name)
    left.set(xscale="log", xlim=(1e-4, 1), ylim=(0.8, 1.0), xlabel="false accept rate",
             ylabel="true accept rate", title="ROC")
    right.set(xscale="log", yscale="log", xlabel="false accept rate", ylabel="false reject rate",
              title="DET")
    for axis in (left, right):
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def format_report(name: str, r: VerificationReport) -> str:
    return (f"{name:>9}: accuracy {100 * r.accuracy:.2f}% ± {100 * r.accuracy_std:.2f}  "
            f"EER {100 * r.eer:.2f}%  TAR@FAR=1e-2 {100 * r.tar_at_far['0.01']:.2f}%  "
            f"TAR@FAR=1e-3 {100 * r.tar_at_far['0.001']:.2f}%  AUC {r.auc:.5f}  "
            f"pairs {r.pairs}  photos without a face {r.no_face}")


def report_json(r: VerificationReport) -> dict:
    return {"accuracy": r.accuracy, "accuracy_std": r.accuracy_std, "eer": r.eer,
            "tar_at_far": r.tar_at_far, "auc": r.auc, "no_face": r.no_face,
            "threshold": r.threshold, "pairs": r.pairs}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The arguments, with every input and output checked before anything is computed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("protocol", choices=("lfw", "pairs"))
    parser.add_argument("--data", type=Path, required=True, help="folder or .tar of the photos")
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--augment", choices=AUGMENTS,
                        help="test-time augmentation (default: what the model card serves with)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="the network's arithmetic, as the service picks it: auto (on the CPU the card's int8 "
                             "network where the card calibrated one, fp32 otherwise; fp16 on a GPU), or fp32 (the "
                             "reference the card's main figures come from), bf16 or int8 on the CPU")
    parser.add_argument("--policy", choices=("dominant", "reject", "centre"), default="dominant",
                        help="which face of a photo with several: the service's (dominant, the default), or the "
                             "research protocol's (centre)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="the detection and chip cache")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--reference", choices=("dlib",), help="also evaluate the reference embedder")
    parser.add_argument("--plot", type=Path, help="write ROC and DET curves to this PNG (needs matplotlib)")
    args = parser.parse_args(argv)
    for path in (args.data, args.pairs, args.model):
        if not path.exists():
            parser.error(f"{path} does not exist")
    if args.plot:
        if importlib.util.find_spec("matplotlib") is None:
            parser.error("--plot needs matplotlib: pip install -e '.[dev]'")
        if not args.plot.parent.is_dir():
            parser.error(f"--plot: the folder {args.plot.parent} does not exist")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    pairs = read_lfw_pairs(args.pairs) if args.protocol == "lfw" else read_generic_pairs(args.pairs)
    embedder = Embedder.load(args.model, args.device, args.augment, args.precision)
    policy = DATASET_POLICY if args.policy == "centre" else replace(SERVICE_POLICY, multi_face=args.policy)
    result = evaluate(args.data, pairs, embedder, cache=args.cache, reference=args.reference == "dlib",
                      policy=policy)
    if args.json:
        output = {**report_json(result.ours), "model_id": embedder.model_id, "augment": embedder.augment,
                  "policy": args.policy, "failure_to_acquire": result.failure_to_acquire,
                  "acquired": report_json(result.acquired)}
        if result.reference is not None:
            output["reference"] = {"name": "dlib", **report_json(result.reference)}
        print(json.dumps(output, indent=2))  # noqa: T201 - the CLI's output
    else:
        print(format_report("facegate", result.ours))  # noqa: T201
        if "facegate as-norm" in result.distances:  # the score the service decides by, with the model's cohort
            normalised = verification_report(result.distances["facegate as-norm"], result.distances["same"],
                                             np.array([p.fold for p in pairs]), no_face=result.ours.no_face)
            print(format_report("as-norm", normalised))  # noqa: T201
        print(format_report("accepted", result.acquired)  # noqa: T201
              + f"  (failure to acquire {100 * result.failure_to_acquire:.2f}% of photos)")
        if result.reference is not None:
            print(format_report("dlib", result.reference))  # noqa: T201
    sys.stdout.flush()  # the figures are out before anything is drawn
    if args.plot:
        plot_curves(result.distances, args.plot)

