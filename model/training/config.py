"""Typed training configuration: the dataclass defaults are the base config, a TOML file overrides a few.

    base = "mfn64-distill.toml"   # optional: the file whose values this one overrides
    [network]
    input_size = 64

The run's output folder is named after the config, and the run logs the full resolved config.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from model.faces.config import CHIPS, DLIB_CHIP_SIZE, PipelineConfig
from model.networks.mobilefacenet import NetworkConfig
from model.training.augment import AugmentConfig


@dataclass(frozen=True)
class DataConfig:
    root: str = "../shared/data"
    # Not celeba-wild.tar: its identities are the validation set (model.datasets.sources.VALIDATION_SOURCES), which
    # training holds out of the CelebA-aligned photos too.
    labelled: tuple[str, ...] = ("celeba-aligned.tar", "lfw-deepfunneled.tar")
    unlabelled: tuple[str, ...] = ("utkface.tar",)
    pairs: str = "lfw-pairs.txt"  # LFW people named here are held out of training
    cache: str = "~/.cache/facegate"  # detections and chips (model.datasets.sources); outside the repository
    # The pool's chips, in pixels; 0: what the network takes, or, with an online teacher, what the teacher
    # takes (150). Smaller chips make a smaller pool file; each network gets its input resized from them.
    crop_size: int = 0


@dataclass(frozen=True)
class LossConfig:
    metric: str = "triplet"  # "triplet" or "contrastive"
    miner: str = "batch_hard"  # triplet only: "batch_hard" or "semi_hard"
    margin: float = 0.3  # triplet margin; contrastive uses contrastive_margin
    contrastive_margin: float = 1.0
    metric_weight: float = 1.0
    distill_weight: float = 1.0  # 0 trains without the dlib teacher
    relational_weight: float = 1.0
    # dlib's unit vectors crowd into a narrow cone (unrelated faces at cosine 0.83): a student can sit on its
    # axis at a low loss and learn nothing. Targets are t - centring * mean(t), then normalised; 0.7 keeps
    # 98.3 % of the teacher's 98.65 % LFW accuracy and spreads unrelated faces to cosine 0.33.
    teacher_centring: float = 0.7


@dataclass(frozen=True)
class TrainConfig:
    name: str = "base"
    seed: int = 0
    # The network: "MobileFaceNet" (built from `network`) or "DlibResNet" (dlib's face ResNet, 150 px).
    architecture: str = "MobileFaceNet"
    # "dlib": start from dlib's public-domain weights (DlibResNet only); "": from random weights.
    init: str = ""
    # Distillation targets: "cached", dlib's descriptors of the clean photo, computed once (model.datasets);
    # "online", dlib's network in PyTorch, frozen, run on the same augmented faces as the student: the starting
    # network when fine-tuning it, the shipped default (model/weights/facegate-resnet.pt) for another network.
    teacher: str = "cached"
    # A MobileFaceNet's input geometry (model.faces.config.CHIPS); DlibResNet always takes dlib's chip. A student
    # of an online teacher takes dlib's chip too, at its own size: both then see the same augmented face.
    chip: str = "fg-align-v1"
    device: str = "auto"  # "auto", "cpu", "cuda"
    threads: int = 0  # CPU threads; 0 = all cores
    steps: int = 3000
    p: int = 16  # identities per metric batch
    k: int = 4  # photos per identity
    distill_batch: int = 64  # extra photos per step for the distillation term, any identity
    lr: float = 3e-3
    weight_decay: float = 5e-4
    warmup: int = 200
    log_every: int = 50
    checkpoint_every: int = 250
    # Exponential moving average of the weights (0 = off); the final model is the average.
    ema_decay: float = 0.0
    out_root: str = "runs"
    network: NetworkConfig = field(default_factory=NetworkConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    data: DataConfig = field(default_factory=DataConfig)

    @property
    def out_dir(self) -> Path:
        return Path(self.out_root) / self.name

    @property
    def pipeline(self) -> PipelineConfig:
        """The faces pipeline that makes this network's input (the service's settings, the network's chip)."""
        if self.architecture == "DlibResNet":
            return PipelineConfig(crop_size=DLIB_CHIP_SIZE, chip="dlib-chip-v1")
        return PipelineConfig(crop_size=self.network.input_size, chip=self.chip)

    @property
    def pool_pipeline(self) -> PipelineConfig:
        """The chips the training pool holds: the network's geometry, at the teacher's size with an online one
        (or at `data.crop_size`)."""
        own = self.pipeline
        default = DLIB_CHIP_SIZE if self.teacher == "online" else own.crop_size
        return replace(own, crop_size=self.data.crop_size or default)

    @property
    def network_arguments(self) -> dict[str, Any]:
        """What the model card records to rebuild the network (model.networks.build)."""
        return {} if self.architecture == "DlibResNet" else self.network.as_dict()

    def __post_init__(self) -> None:
        if self.init not in ("", "dlib") or (self.init == "dlib") != (self.architecture == "DlibResNet"):
            raise ValueError('init = "dlib" goes with architecture = "DlibResNet", and only with it')
        if self.teacher not in ("cached", "online"):
            raise ValueError(f"teacher must be 'cached' or 'online', not {self.teacher!r}")
        if self.chip not in CHIPS:
            raise ValueError(f"chip must be one of {', '.join(CHIPS)}, not {self.chip!r}")
        if self.data.crop_size < 0:
            raise ValueError(f"data.crop_size must be 0 (the network's or the teacher's size) or more, "
                             f"not {self.data.crop_size}")
        if self.teacher == "online" and self.pipeline.chip != "dlib-chip-v1":
            raise ValueError('an online teacher sees dlib\'s chip, and so must its student: chip = "dlib-chip-v1"')

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, values: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    kwargs = {}
    for key, value in values.items():
        default = getattr(cls(), key)
        if dataclasses.is_dataclass(default):
            value = _build(type(default), value)
        elif isinstance(default, tuple):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def from_dict(values: dict[str, Any]) -> TrainConfig:
    return _build(TrainConfig, values)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and key in merged else value
    return merged


def read_toml(path: Path) -> dict[str, Any]:
    """A config file; `base = "other.toml"` (relative to it) names the file whose values it overrides."""
    values = tomllib.loads(path.read_text())
    base = values.pop("base", None)
    if not base:
        return values
    inherited = read_toml(path.parent / base)
    inherited.pop("name", None)  # a run is named after its own file
    return _merge(inherited, values)


def load_config(path: Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The config in `path`, named after the file unless it says otherwise; `overrides` win over both."""
    values = _merge(read_toml(path), overrides or {})
    values.setdefault("name", path.stem)
    return from_dict(values)
