"""The last stage of the faces pipeline: aligned crops -> L2-normalised embeddings.

A model is two files side by side: `<name>.pt` (a state dict) and `<name>.json` (its model card). The card
rebuilds the network (architecture arguments), says which preprocessing it expects and carries the
calibrated thresholds. `model_id` is a content hash of the weights, so templates made by one model are
never compared with another's.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.faces.pipeline import PREPROCESS_VERSION, crops_to_tensor
from model.network import MobileFaceNet, NetworkConfig

log = logging.getLogger(__name__)

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "model" / "weights" / "facegate-mfn.pt"


class ModelError(RuntimeError):
    """The model files are missing, corrupt or do not fit this code."""


@dataclass(frozen=True)
class ModelCard:
    data: dict[str, Any]

    @property
    def network(self) -> NetworkConfig:
        return NetworkConfig(**self.data["network"])

    @property
    def input_size(self) -> int:
        return int(self.data["network"]["input_size"])

    @property
    def embedding_dim(self) -> int:
        return int(self.data["network"]["embedding_dim"])

    @property
    def preprocess(self) -> str:
        return str(self.data["preprocess"])

    @property
    def threshold(self) -> float:
        """The service's default decision threshold (see the card's `thresholds.reason`)."""
        return float(self.data["thresholds"]["default"])

    @classmethod
    def read(cls, path: Path) -> ModelCard:
        try:
            return cls(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read model card {path}: {exc}") from exc


def card_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def weights_id(blob: bytes) -> str:
    return "sha256:" + hashlib.sha256(blob).hexdigest()[:16]


class Embedder:
    """A loaded, frozen embedder. `embed` is safe to call from several threads at once."""

    def __init__(self, network: MobileFaceNet, card: ModelCard, model_id: str, device: torch.device) -> None:
        self.card, self.model_id, self.device = card, model_id, device
        self.half = device.type == "cuda"
        network = network.to(device).eval()
        self.network = network.half() if self.half else network

    @property
    def input_size(self) -> int:
        return self.card.input_size

    @property
    def dim(self) -> int:
        return self.card.embedding_dim

    @classmethod
    def load(cls, weights: Path, device: str = "auto") -> Embedder:
        card = ModelCard.read(card_path(weights))
        if card.preprocess != PREPROCESS_VERSION:
            raise ModelError(f"{weights} expects preprocessing {card.preprocess!r}, this code does "
                             f"{PREPROCESS_VERSION!r}")
        try:
            blob = weights.read_bytes()
            state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
            network = MobileFaceNet(card.network)
            network.load_state_dict(state)
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise ModelError(f"cannot load weights {weights}: {exc}") from exc
        chosen = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                              "cpu" if device == "auto" else device)
        log.info("loaded %s (%s) on %s", weights.name, weights_id(blob), chosen)
        return cls(network, card, weights_id(blob), chosen)

    @torch.inference_mode()
    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 aligned crops -> (N, D) float32 unit vectors."""
        x = crops_to_tensor(crops).to(self.device).contiguous(memory_format=torch.channels_last)
        if self.half:
            x = x.half()
        return self.network(x).float().cpu().numpy()

    def embed_many(self, crops: np.ndarray, batch_size: int = 256) -> np.ndarray:
        parts = [self.embed(crops[i:i + batch_size]) for i in range(0, len(crops), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)
