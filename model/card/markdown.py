"""The model card as Markdown, rendered from its JSON so that the two always agree (model.card.schema.write_card)."""

from __future__ import annotations

import json
from pathlib import Path

from model.card.keys import (
    BY_AUGMENT,
    BY_REFERENCES,
    COHORT,
    FAR_LEVELS,
    IMPOSTOR_TAIL,
    INT8,
    NORMALISED_TAIL,
    THRESHOLDS,
)


def recipe_path(name: str) -> str:
    configs = Path(__file__).parents[1] / "configs"
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
    tails = thresholds.get(IMPOSTOR_TAIL)
    if not tails:
        return []
    first = next(iter(tails.values()))
    levels = list(first[FAR_LEVELS])
    return [
        f"- **1:N impostor tail** (/identify sets FAR = FPIR / gallery size on it): {first['data']}, "
        f"{first['impostor_pairs']:,} pairs",
        "",
        "| augmentation | " + " | ".join(f"FAR {far}" for far in levels) + " |",
        "|---|" + "---|" * len(levels),
        *[f"| {augment} | " + " | ".join(f"{tail[FAR_LEVELS][far]:.4f}" for far in levels) + " |"
          for augment, tail in tails.items()],
    ]


def _cohort_lines(card: dict) -> list[str]:
    """The AS-norm cohort and the thresholds of fused templates and normalised scores, when the card has them."""
    cohort, thresholds = card.get(COHORT), card[THRESHOLDS]
    if not cohort or NORMALISED_TAIL not in thresholds or BY_REFERENCES not in thresholds:
        return []
    fused, tail = thresholds[BY_REFERENCES], thresholds[NORMALISED_TAIL]
    kinds = {"1": tail[FAR_LEVELS], **{r: t[FAR_LEVELS] for r, t in tail.get(BY_REFERENCES, {}).items()}}
    levels = list(tail[FAR_LEVELS])
    return [
        "",
        "## Decisions: fused templates and the AS-norm cohort (model.release.cohort)",
        "",
        f"- **cohort**: `{cohort['file']}` (sha256 `{cohort['sha256'][:16]}`...), {cohort['vectors']:,} vectors, "
        f"K = {cohort['k']}, augmentation `{cohort['augment']}`. {cohort['data']}. Licence: {cohort['licence']}.",
        f"- **chosen on**: {cohort['chosen_on']}; the table of every size and K tried is in the JSON card",
        f"- **1:1, templates fused from R references** (distance at FAR {fused['far']:g}; {fused['data']}): "
        + ", ".join(f"R={r}: {t:.4f} (TAR {100 * fused['tar'][r]:.1f} %)" for r, t in fused["levels"].items()),
        f"- **AS-norm impostor tails** ({tail['data']}; 1:1 reads FAR 1e-3, 1:N FAR = FPIR / gallery size): score "
        "thresholds",
        "",
        "| references | " + " | ".join(f"FAR {far}" for far in levels) + " |",
        "|---|" + "---|" * len(levels),
        *[f"| {r} | " + " | ".join(f"{kind[far]:.3f}" if far in kind else "-" for far in levels) + " |"
          for r, kind in kinds.items()],
    ]


def _int8_lines(card: dict) -> list[str]:
    """The quantized copy of the network for the CPU (model.release.quantize), when the card has one."""
    int8 = card.get(INT8)
    if not int8:
        return []
    lines = [
        "",
        "## int8: what the CPU serves (model.release.quantize; FACEGATE_PRECISION=fp32 serves the network itself)",
        "",
        f"- **file**: `{int8['file']}` (sha256 `{int8['sha256'][:16]}`...), {int8['format']}; made with "
        + ", ".join(f"{tool} {version}" for tool, version in int8["tools"].items()),
        f"- **calibration**: {int8['calibration']}",
    ]
    if THRESHOLDS in int8:
        own = int8[THRESHOLDS]
        lines.append(f"- **its own thresholds**, calibrated again on its vectors as the network's were (every section "
                     f"of the JSON card's `int8.thresholds`): 1:1 default {own['default']:.4f} (fp32: "
                     f"{card[THRESHOLDS]['default']:.4f})")
    if "agreement" in int8:
        a = int8["agreement"]
        lines.append(f"- **against fp32**, on {a['data']}: cosine of a face's two vectors at least "
                     f"{a['cosine_min']:.5f} (mean {a['cosine_mean']:.5f}); a pair's distance moves by at most "
                     f"{a['pair_distance_change_max']:.4f}")
    if "validation" in int8 and "lfw" in int8:
        v, lfw = int8["validation"], int8["lfw"]
        shipped = v["fp32"]["at_fp32_threshold"]["threshold"]
        lines += [
            "",
            f"Validation (CelebA-wild identities, every pair) and LFW ({lfw['protocol']}), in one run:",
            "",
            "| arithmetic | threshold at FAR 1e-3 | TAR there | EER | at fp32's threshold "
            f"({shipped:.4f}): TAR / FAR | LFW accuracy | LFW TAR @ FAR 1e-3 |",
            "|---|---|---|---|---|---|---|",
            *[f"| {name} | {v[name]['threshold_at_far_1e-3']:.4f} | {100 * v[name]['tar_at_default']:.2f} % | "
              f"{100 * v[name]['eer']:.2f} % | {100 * v[name]['at_fp32_threshold']['tar']:.2f} % / "
              f"{v[name]['at_fp32_threshold']['far']:.2e} | {100 * lfw[name]['accuracy']:.2f} % ± "
              f"{100 * lfw[name]['accuracy_std']:.2f} | {100 * lfw[name]['tar_at_far']['0.001']:.2f} % |"
              for name in ("fp32", "int8")],
        ]
    return lines


def render_markdown(card: dict) -> str:
    """The card as Markdown, written from the JSON card so that the two always agree."""
    ours, ref = card["metrics"]["lfw"], card["metrics"]["reference_dlib"]
    at_default, validation = card["metrics"]["lfw_at_default_threshold"], card["validation"]
    thresholds = card[THRESHOLDS]

    def row(name: str, r: dict) -> str:
        return (f"| {name} | {100 * r['accuracy']:.2f} % ± {100 * r['accuracy_std']:.2f} | {100 * r['eer']:.2f} % | "
                f"{100 * r['tar_at_far']['0.01']:.2f} % | {100 * r['tar_at_far']['0.001']:.2f} % | {r['auc']:.4f} | "
                f"{r['no_face']} |")

    lines = [
        f"# Model card: {card['name']}",
        "",
        f"Generated from `model/weights/{card['name']}.json` by `python -m model.release.export` or "
        "`python -m model.release.import_dlib`. Do not edit by hand.",
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
        *_cohort_lines(card),
        *_int8_lines(card),
        "",
        "## Validation (CelebA-wild identities, held out of training; chooses and calibrates)",
        "",
        "| augmentation | threshold at FAR 1e-3 | TAR there | TAR at FAR 1e-4 | EER | best accuracy | AUC |",
        "|---|---|---|---|---|---|---|",
        *[f"| {augment}{' (served)' if augment == card['augment'] else ''} | {thresholds[BY_AUGMENT][augment]:.4f} | "
          f"{100 * v['tar_at_default']:.2f} % | "
          + (f"{100 * v['tar_at_far_1e-4']:.2f} %" if v["tar_at_far_1e-4"] is not None else "n/a")
          + f" | {100 * v['eer']:.2f} % | {100 * v['best_accuracy']:.2f} % | {v['auc']:.4f} |"
          for augment, v in validation[BY_AUGMENT].items()],
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
