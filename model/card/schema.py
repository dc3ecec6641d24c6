"""The model card's schema: what a card holds, how it is read, and how a model's two files are written.

A model is two files side by side: `<name>.pt` (a state dict) and `<name>.json` (its card), with `<name>.md`
rendered from the JSON for people (model.card.markdown). The card rebuilds the network (architecture
arguments), says which preprocessing and test-time augmentation it expects, and carries the calibrated
thresholds: the 1:1 default, one per augmentation, and the impostor curves (model.card.curves) that the 1:N
and multi-reference thresholds are read from. `model_id` is a content hash of the weights, so templates made
by one model are never compared with another's.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.card.curves import Curve
from model.card.keys import (
    BY_AUGMENT,
    BY_REFERENCES,
    COHORT,
    FAR_LEVELS,
    IMPOSTOR_TAIL,
    INT8,
    NORMALISED_TAIL,
    THRESHOLDS,
    Augment,
)
from model.card.markdown import render_markdown
from model.card.scores import Cohort


class ModelError(RuntimeError):
    """The model files are missing, corrupt or do not fit this code."""


def card_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def cohort_path(weights: Path) -> Path:
    """Where a model's AS-norm cohort lives: `<name>.cohort.npy`, beside its card."""
    return weights.with_suffix(".cohort.npy")


def int8_path(weights: Path) -> Path:
    """Where a model's int8 network for the CPU lives (model.release.quantize): `<name>.int8.onnx`."""
    return weights.with_suffix(".int8.onnx")


def weights_id(blob: bytes) -> str:
    return "sha256:" + hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class ModelCard:
    data: dict[str, Any]

    @property
    def architecture(self) -> str:
        return str(self.data.get("architecture", "MobileFaceNet"))

    @property
    def network(self) -> dict[str, Any]:
        """The network's constructor arguments."""
        return dict(self.data["network"])

    @property
    def input_size(self) -> int:
        return int(self.data["input_size"])

    @property
    def embedding_dim(self) -> int:
        return int(self.data["embedding_dim"])

    @property
    def preprocess(self) -> str:
        """The chip geometry the network was trained on (model.faces.config.CHIPS)."""
        return str(self.data["preprocess"])

    @property
    def augment(self) -> Augment:
        """The test-time augmentation the model serves with, and was calibrated with."""
        return self.data.get("augment", "none")

    @property
    def threshold(self) -> float:
        """The service's default decision threshold (see the card's `thresholds.reason`)."""
        return float(self.data[THRESHOLDS]["default"])

    def threshold_for(self, augment: Augment) -> float:
        """The default threshold as calibrated with this test-time augmentation (cards that calibrated only
        one give that one)."""
        return float(self.data[THRESHOLDS].get(BY_AUGMENT, {}).get(augment, self.threshold))

    def far_levels_for(self, augment: Augment) -> Curve:
        """{FAR per comparison: threshold} for the 1:N decision: this augmentation's impostor tail (down to
        about 1e-7), or, on a card without one, the levels of the 1:1 calibration."""
        thresholds = self.data[THRESHOLDS]
        tail = thresholds.get(IMPOSTOR_TAIL, {}).get(augment)
        levels = tail[FAR_LEVELS] if tail else thresholds.get(FAR_LEVELS, {})
        return {float(far): float(threshold) for far, threshold in levels.items()}

    def _calibrated_with(self, key: str, augment: Augment) -> dict:
        """The thresholds' section `key` (model.release.cohort's), when it was calibrated with this augmentation;
        empty otherwise: another augmentation's thresholds do not hold."""
        section = self.data[THRESHOLDS].get(key)
        return section if section and section.get("augment") == augment else {}

    def references_levels_for(self, augment: Augment) -> dict[int, float]:
        """{R: 1:1 threshold for a template fused from R references}, calibrated with this augmentation; empty
        on a card without them, or calibrated with another."""
        calibrated = self._calibrated_with(BY_REFERENCES, augment)
        return {int(r): float(t) for r, t in calibrated.get("levels", {}).items()}

    def fused_far_levels_for(self, augment: Augment) -> dict[int, Curve]:
        """{R: {FAR per comparison: distance threshold}} of templates fused from R >= 2 references, calibrated with
        this augmentation; empty on a card without them."""
        calibrated = self._calibrated_with(BY_REFERENCES, augment)
        return {int(r): {float(far): float(t) for far, t in levels.items()}
                for r, levels in calibrated.get(FAR_LEVELS, {}).items() if int(r) > 1}

    def normalised_levels_for(self, augment: Augment) -> dict[int, Curve]:
        """{R: {FAR per comparison: AS-norm score threshold}} for the 1:N decision with this augmentation's
        cohort, for templates fused from R references (1 and up); empty without a cohort."""
        tail = self._calibrated_with(NORMALISED_TAIL, augment)
        if not tail:
            return {}
        curves = {1: tail[FAR_LEVELS], **{int(r): t[FAR_LEVELS] for r, t in tail.get(BY_REFERENCES, {}).items()}}
        return {r: {float(far): float(threshold) for far, threshold in levels.items()} for r, levels in curves.items()}

    def cohort(self, weights: Path, augment: Augment) -> Cohort | None:
        """The AS-norm cohort shipped beside the weights, when the card has one for this augmentation (vectors
        embedded with another are not comparable). A file that does not match its hash is an error."""
        info = self.data.get(COHORT)
        if not info or info.get("augment") != augment or not self.normalised_levels_for(augment):
            return None
        path = weights.parent / info["file"]
        try:
            blob = path.read_bytes()
            if hashlib.sha256(blob).hexdigest() != info["sha256"]:
                raise ModelError(f"{path} does not match its card's sha256: it is not the cohort the thresholds "
                                 "were calibrated with")
            vectors = np.load(io.BytesIO(blob), allow_pickle=False).astype(np.float32)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read the cohort {path}: {exc}") from exc
        return Cohort(vectors, int(info["k"]))

    @property
    def int8_calibrated(self) -> bool:
        """The card ships an int8 network with its own thresholds (model.release.quantize)."""
        return THRESHOLDS in self.data.get(INT8, {})

    @property
    def int8_weight_bits(self) -> int:
        """How many bits the int8 network's weights take: 7 where model.release.quantize reduced their range
        (`int8.weight_bits`), 8 in a card that does not say."""
        return int(self.data.get(INT8, {}).get("weight_bits", 8))

    def for_int8(self) -> ModelCard:
        """The card as int8's vectors are decided by: its own thresholds (model.release.quantize calibrates every
        section of `thresholds` again on int8's vectors, for the augmentation it serves with), the rest as it is."""
        thresholds = self.data.get(INT8, {}).get(THRESHOLDS)
        if not thresholds:
            raise ModelError(f"the card of {self.data.get('name')} has no thresholds calibrated for its int8 network")
        return ModelCard({**self.data, THRESHOLDS: thresholds})

    @classmethod
    def read(cls, path: Path) -> ModelCard:
        try:
            return cls(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read model card {path}: {exc}") from exc


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


def read_card(weights: Path) -> dict:
    """The card of the model at `weights`, as its JSON, for a writer to complete."""
    return json.loads(card_path(weights).read_text())


def write_card(weights: Path, card: dict) -> None:
    """Write a completed card: the JSON the service reads and the Markdown rendered from it, together, so that
    the two always agree."""
    card_path(weights).write_text(json.dumps(card, indent=2))
    weights.with_suffix(".md").write_text(render_markdown(card))
