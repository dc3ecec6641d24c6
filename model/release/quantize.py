"""Ship an int8 copy of a model's network for the CPU: ONNX, quantized statically, calibrated on training-side faces.

    python -m model.release.quantize model/weights/facegate-resnet.pt --data ../shared/data [--faces 1000]

1. The network's `raw` (chips in [-1, 1] -> descriptors before normalisation) is exported to ONNX as it is.
2. ONNX Runtime's static quantization (QDQ): weights int8 in 7 bits ([-64, 64], its `reduce_range`), one scale
   per output channel; activations uint8, one range per tensor, read off `--faces` UTKFace faces and their
   mirrors, through the service's own pipeline. UTKFace is training-side (unlabelled), neither the validation
   source (CelebA) nor the test set (LFW). Seven bits, because x86 CPUs without VNNI multiply uint8 by int8 with
   VPMADDUBSW, which adds pairs of products in 16 bits: 8-bit weights saturate it (the embeddings of the test
   faces fell to cosine 0.978 of fp32's on an AVX2-only AMD EPYC), 7-bit ones cannot (2 x 255 x 64 = 32,640 fits
   in 16 bits; 0.998 there), so one network and one calibration hold on every CPU
   (model.faces.embedder.int8_is_exact).
3. Writes `<name>.int8.onnx` beside the weights and adds `int8` to the card: the file and its hash, the
   calibration, the tools' versions, how far its embeddings are from the network's own on validation faces,
   the validation figures (CelebA-wild) and LFW's research protocol, each beside fp32's in the same run.
4. Calibrates every threshold again on int8's vectors, as model.release.export and model.release.cohort do
   fp32's (the validation data, the card's augmentation and cohort), into the card's `int8.thresholds`: the
   service runs it with FACEGATE_PRECISION=int8 (model.faces.embedder) and decides by those.

Needs the `release` extra (onnx, for ONNX Runtime's quantization tools): pip install -e '.[release]'.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import logging
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch import nn

from model.card.keys import BY_AUGMENT, BY_REFERENCES, IMPOSTOR_TAIL, INT8, NORMALISED_TAIL, THRESHOLDS
from model.card.schema import int8_path, read_card, write_card
from model.datasets.sources import DEFAULT_CACHE, iter_images, read_lfw_pairs
from model.evaluation.calibrate import calibrate_pairs, celeba_photos, impostor_tail, validation_pairs
from model.evaluation.cohort import COHORT_SOURCE
from model.evaluation.evaluate import evaluate, pipeline_config, report_json
from model.faces.config import DATASET_POLICY
from model.faces.decode import decode_image
from model.faces.embedder import Embedder, Int8Network
from model.faces.pipeline import FacePipeline
from model.networks import crops_to_tensor
from model.release.cohort import decision_thresholds

log = logging.getLogger(__name__)
OPSET = 17
BATCH = 32
VALIDATION_FIGURES = ("tar_at_default", "tar_at_far_1e-4", "eer", "best_accuracy")
LFW_FIGURES = ("accuracy", "accuracy_std", "eer", "tar_at_far")
WEIGHT_BITS = 7  # ONNX Runtime's reduce_range: what every CPU adds up without saturating (int8_is_exact)


class _Raw(nn.Module):
    """The network's `raw`, as the module the exporter traces."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network.raw(x)


def calibration_chips(embedder: Embedder, source: Path, faces: int, seed: int = 0) -> np.ndarray:
    """(n, S, S, 3) uint8 chips of `faces` photos of `source` drawn at random, one face each (photos where HOG
    finds none are passed over, as they were when dlib's own CNN, run in this process, hung the process pools forked
    after it: the shipped network was calibrated so)."""
    pipeline = FacePipeline(replace(pipeline_config(embedder), cnn_fallback=False))
    names = [name for name, _ in iter_images(source)]
    wanted = set(np.random.default_rng(seed).permutation(len(names))[:int(faces * 1.1) + 10].tolist())
    chips = []
    for i, (_, blob) in enumerate(iter_images(source)):
        if i not in wanted or len(chips) == faces:
            continue
        rgb = decode_image(blob, max_pixels=50_000_000)
        found = pipeline.detect(rgb)
        if found:
            chips.append(pipeline.align(rgb, found[0]))
    if len(chips) < faces:
        raise RuntimeError(f"{source}: {len(chips)} faces found for the {faces} asked")
    return np.stack(chips)


def network_inputs(chips: np.ndarray, flip: bool) -> np.ndarray:
    """What the embedder feeds its network for these chips: [-1, 1] floats, the mirrors after the faces."""
    x = crops_to_tensor(chips)
    return (torch.cat([x, x.flip(3)]) if flip else x).numpy()


def quantize(embedder: Embedder, chips: np.ndarray, out: Path) -> None:
    """Export the embedder's network to ONNX and quantize it to `out`, calibrated on `chips`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    inputs = network_inputs(chips, embedder.views.flip)

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(range(0, len(inputs), BATCH))

        def get_next(self) -> dict[str, np.ndarray] | None:
            start = next(self.batches, None)
            return None if start is None else {"x": inputs[start:start + BATCH]}

    network = copy.deepcopy(embedder.network).float().to(memory_format=torch.contiguous_format)
    with tempfile.TemporaryDirectory() as folder:
        exported, prepared = Path(folder) / "fp32.onnx", Path(folder) / "prepared.onnx"
        # The TorchScript exporter: the torch.export one needs onnxscript, a dependency for nothing else. Its
        # tracer warns of _padded_add's shape test, a constant for the one chip size, as traced.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(_Raw(network), (torch.zeros(2, 3, embedder.input_size, embedder.input_size),),
                              str(exported), input_names=["x"], output_names=["raw"], opset_version=OPSET,
                              dynamic_axes={"x": {0: "n"}, "raw": {0: "n"}}, dynamo=False)
        quant_pre_process(str(exported), str(prepared))
        quantize_static(str(prepared), str(out), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def agreement(reference: np.ndarray, int8: np.ndarray) -> dict:
    """How far int8's unit vectors are from the reference's, row by row, and the largest change of a pair's
    distance among the first 1,000."""
    cosine = (reference * int8).sum(axis=1)
    n = min(1000, len(reference))
    change = np.abs(np.linalg.norm(reference[:n, None] - reference[None, :n], axis=2)
                    - np.linalg.norm(int8[:n, None] - int8[None, :n], axis=2))
    return {"cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean()),
            "pair_distance_change_max": float(change.max())}


def validation(embedder: Embedder, data_root: Path, cache: Path) -> tuple[dict, dict]:
    """(figures, 1:1 thresholds): model.release.export's calibration of the embedder's vectors (every pair among
    the CelebA-wild identities' photos), its figures, and what the fp32 card's 1:1 distance threshold gives there."""
    pairs = validation_pairs(embedder, data_root, cache)
    thresholds, figures = calibrate_pairs(*pairs)
    genuine, impostor, _, _ = pairs
    shipped = embedder.card.threshold
    return {"threshold_at_far_1e-3": thresholds["far_1e-3"], **{k: figures[k] for k in VALIDATION_FIGURES},
            "at_fp32_threshold": {"threshold": shipped, "tar": float((genuine <= shipped).mean()),
                                  "far": float((impostor <= shipped).mean())}}, thresholds


def lfw_research_protocol(embedder: Embedder, data_root: Path, cache: Path) -> dict:
    """LFW View 2, the face nearest the centre (the research protocol): the test, reported, never chosen on."""
    pairs = read_lfw_pairs(data_root / "lfw-pairs.txt")
    result = evaluate(data_root / "lfw-deepfunneled.tar", pairs, embedder, cache=cache, policy=DATASET_POLICY)
    return {k: v for k, v in report_json(result.ours).items() if k in LFW_FIGURES}


def add_int8(weights: Path, chips: np.ndarray, calibration: str) -> dict:
    """Quantize the model at `weights`, calibrated on `chips` (which `calibration` describes for the card),
    beside it, and name the file in its card."""
    embedder = Embedder.load(weights, "cpu", precision="fp32")
    path = int8_path(weights)
    quantize(embedder, chips, path)
    card = read_card(weights)
    card[INT8] = {
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "format": f"ONNX opset {OPSET}, QDQ: weights int8 in {WEIGHT_BITS} bits per output channel, activations "
                  "uint8 per tensor (MinMax); it gives the network's raw descriptors, normalised by the service as "
                  "the network's",
        "weight_bits": WEIGHT_BITS,
        "calibration": calibration,
        "tools": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
    }
    write_card(weights, card)
    return card


def uncalibrated(weights: Path) -> Embedder:
    """The int8 embedder before the card has thresholds for it: the card, and so `card.threshold`, is fp32's."""
    fp32 = Embedder.load(weights, "cpu", precision="fp32")
    return Embedder(fp32.network, fp32.card, fp32.model_id, fp32.device, None, fp32.cohort, "int8",
                    Int8Network.of(fp32.card, weights))


def int8_thresholds(int8: Embedder, one_to_one: dict, data_root: Path, cache: Path, max_references: int) -> dict:
    """Every section of the card's `thresholds`, calibrated again on int8's vectors of the validation data, as
    model.release.export and model.release.cohort calibrate fp32's, for the augmentation the card serves with;
    the cohort's vectors are the card's own. `one_to_one`: int8's `validation` thresholds, the sections' base."""
    thresholds = dict(one_to_one)
    thresholds[BY_AUGMENT] = {int8.augment: thresholds["default"]}
    thresholds[IMPOSTOR_TAIL] = {int8.augment: impostor_tail(int8, data_root, cache)}
    if int8.cohort is not None:
        thresholds[BY_REFERENCES], thresholds[NORMALISED_TAIL] = decision_thresholds(
            celeba_photos(int8, data_root, cache), int8.cohort, int8.augment, max_references)
    return thresholds


def ship_int8(weights: Path, data_root: Path, cache: Path, *, faces: int, max_references: int) -> dict:
    """`add_int8` on UTKFace faces, what int8 changes on the validation identities and on LFW, and int8's own
    thresholds, in the card."""
    embedder = Embedder.load(weights, "cpu", precision="fp32")
    card = add_int8(weights, calibration_chips(embedder, data_root / COHORT_SOURCE, faces),
                    f"{faces:,} UTKFace photos at random, one face each, and their mirrors, through the service's "
                    "pipeline (training-side, unlabelled; neither CelebA nor LFW)")
    int8 = uncalibrated(weights)
    wild = [celeba_photos(e, data_root, cache)[0][0] for e in (embedder, int8)]  # CelebA-wild: validation
    card[INT8]["agreement"] = {
        "data": f"the {len(wild[0]):,} CelebA-wild photos with a face (validation identities), {embedder.augment}",
        **agreement(*wild)}
    (fp32_figures, _), (int8_figures, one_to_one) = (validation(e, data_root, cache) for e in (embedder, int8))
    card[INT8]["validation"] = {"fp32": fp32_figures, "int8": int8_figures}
    card[INT8]["lfw"] = {"protocol": "View 2, 10 folds, the face nearest the centre of each photo",
                         "fp32": lfw_research_protocol(embedder, data_root, cache),
                         "int8": lfw_research_protocol(int8, data_root, cache)}
    card[INT8][THRESHOLDS] = int8_thresholds(int8, one_to_one, data_root, cache, max_references)
    write_card(weights, card)
    return card


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--faces", type=int, default=1000, help="calibration faces (UTKFace)")
    parser.add_argument("--max-references", type=int, default=5, help="as model.release.cohort's")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for name in (COHORT_SOURCE, "lfw-deepfunneled.tar", "lfw-pairs.txt"):
        if not (args.data / name).exists():
            parser.error(f"{args.data / name} is missing")
    if args.faces < 16:
        parser.error("--faces: at least 16")
    ship_int8(args.weights, args.data, args.cache, faces=args.faces, max_references=args.max_references)


if __name__ == "__main__":
    main()
