"""Evaluate an embedder on face pairs, through the service's own pipeline.

    python -m model.evaluate lfw --data ../shared/data/lfw-deepfunneled.tar \
        --pairs ../shared/data/lfw-pairs.txt [--model model/weights/facegate-mfn.pt] \
        [--json] [--reference dlib] [--plot roc.png]
    python -m model.evaluate pairs --data ROOT --pairs FILE     # lines: pathA<TAB>pathB<TAB>same

The protocol is LFW View 2's: 10-fold accuracy with the threshold chosen on the other nine folds, EER, TAR
at FAR 1e-2 and 1e-3, and ROC AUC. A photo in which no face is found follows the service's policy: it
cannot match anyone, so its pairs count as "different". They are reported, never dropped.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.faces import PipelineConfig
from app.faces.embedder import DEFAULT_MODEL, Embedder
from model.data import FaceSet, Pair, aligned_crops, detect_source, read_generic_pairs, read_lfw_pairs, without_root
from model.metrics import VerificationReport, roc, verification_report

log = logging.getLogger(__name__)


@dataclass
class PairSet:
    """The pairs, each side an index into `paths`, with embeddings per path (NaN where no face)."""

    pairs: list[Pair]
    index_a: np.ndarray
    index_b: np.ndarray
    same: np.ndarray
    folds: np.ndarray
    found: np.ndarray  # per path

    @property
    def no_face(self) -> int:
        used = np.union1d(self.index_a, self.index_b)
        return int((~self.found[used]).sum())


def euclidean_pair_distances(vectors: np.ndarray, pairs: PairSet) -> np.ndarray:
    d = np.linalg.norm(vectors[pairs.index_a] - vectors[pairs.index_b], axis=1)
    missing = ~(pairs.found[pairs.index_a] & pairs.found[pairs.index_b])
    return np.where(missing, np.inf, d)


def load_pairs(source: Path, pairs: list[Pair], *, teacher: bool,
               config: PipelineConfig | None = None) -> tuple[PairSet, FaceSet]:
    """Detect every photo of `source` (cached), and index the pairs into its photos."""
    faces = detect_source(source, teacher=teacher, config=config)
    names = without_root(faces.paths)
    position = {name: i for i, name in enumerate(names)}
    missing = sorted({p for pair in pairs for p in (pair.a, pair.b) if p not in position})
    if missing:
        raise SystemExit(f"{len(missing)} photos named in the pairs are not in {source}, e.g. {missing[0]}")
    pair_set = PairSet(
        pairs,
        np.array([position[p.a] for p in pairs]),
        np.array([position[p.b] for p in pairs]),
        np.array([p.same for p in pairs]),
        np.array([p.fold for p in pairs]),
        faces.found,
    )
    return pair_set, faces


def embed_source(embedder: Embedder, source: Path, faces: FaceSet) -> np.ndarray:
    """Embeddings of every detected face of the source; zeros where none was found."""
    crops = aligned_crops(source, faces, embedder.input_size)
    vectors = np.zeros((len(crops), embedder.dim), np.float32)
    vectors[faces.found] = embedder.embed_many(crops[faces.found])
    return vectors


@dataclass
class Evaluation:
    ours: VerificationReport
    reference: VerificationReport | None
    distances: dict[str, np.ndarray]  # per pair, by embedder name, plus "same"
    faces: FaceSet  # every photo of the source, with its detection
    vectors: np.ndarray  # our embedding of each photo (zeros where no face was found)


def evaluate(source: Path, pairs: list[Pair], embedder: Embedder, *, reference: bool = False,
             config: PipelineConfig | None = None) -> Evaluation:
    """`config`: the detection settings (default: the datasets', HOG upsampled once on every photo)."""
    pair_set, faces = load_pairs(source, pairs, teacher=reference, config=config)
    vectors = embed_source(embedder, source, faces)
    distances = {"facegate": euclidean_pair_distances(vectors, pair_set)}
    ours = verification_report(distances["facegate"], pair_set.same, pair_set.folds, no_face=pair_set.no_face)
    theirs = None
    if reference:
        # face_recognition compares dlib's raw (unnormalised) descriptors by Euclidean distance.
        distances["dlib"] = euclidean_pair_distances(faces.teacher, pair_set)
        theirs = verification_report(distances["dlib"], pair_set.same, pair_set.folds,
                                     no_face=pair_set.no_face)
    distances["same"] = pair_set.same
    return Evaluation(ours, theirs, distances, faces, vectors)


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("protocol", choices=("lfw", "pairs"))
    parser.add_argument("--data", type=Path, required=True, help="folder or .tar of the photos")
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--reference", choices=("dlib",), help="also evaluate the reference embedder")
    parser.add_argument("--plot", type=Path, help="write ROC and DET curves to this PNG")
    parser.add_argument("--adaptive-upsample", action="store_true",
                        help="detect as the service does by default (HOG upsampled only when needed)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)

    pairs = read_lfw_pairs(args.pairs) if args.protocol == "lfw" else read_generic_pairs(args.pairs)
    embedder = Embedder.load(args.model, args.device)
    config = PipelineConfig(adaptive_upsample=True) if args.adaptive_upsample else None
    result = evaluate(args.data, pairs, embedder, reference=args.reference == "dlib", config=config)
    if args.plot:
        plot_curves(result.distances, args.plot)
    if args.json:
        output = {**report_json(result.ours), "model_id": embedder.model_id}
        if result.reference is not None:
            output["reference"] = {"name": "dlib", **report_json(result.reference)}
        print(json.dumps(output, indent=2))  # noqa: T201 - the CLI's output
        return
    print(format_report("facegate", result.ours))  # noqa: T201
    if result.reference is not None:
        print(format_report("dlib", result.reference))  # noqa: T201


if __name__ == "__main__":
    main()
