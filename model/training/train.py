"""Siamese training of the face embedder.

    python -m model.training model/configs/resnet-finetune.toml [--steps N] [--minutes M] [--device cpu|cuda]
    python -m model.training model/configs/mfn64-distill.toml

Each step draws a P x K batch of labelled identities for the metric loss (triplet or contrastive, mined
online) plus extra photos of anyone, UTKFace included, for distillation from dlib's CC0 ResNet. One
shared-weight network embeds them all: that is the siamese part. The teacher's targets are either dlib's
descriptors of the clean photos, computed once (`teacher = "cached"`, for a student such as the
MobileFaceNet at 64 px), or dlib's network in PyTorch, frozen, run on the same augmented faces as the student
(`teacher = "online"`: when fine-tuning dlib's network with `init = "dlib"`, or for a student on dlib's chip,
which sees the teacher's augmented face resized to its own input). AMP on CUDA, plain fp32 on the CPU. The
run checkpoints into runs/<config name>/ and resumes from there, exactly, when started again.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.datasets.sources import has_descriptor
from model.faces.config import DLIB_CHIP_SIZE
from model.faces.embedder import DEFAULT_MODEL, Embedder
from model.faces.pipeline import dlib_model_path
from model.faces.reference import DLIB_RESNET
from model.networks import build, crops_to_tensor
from model.networks.dlib_resnet import read_dat
from model.training.augment import FaceAugment
from model.training.config import LossConfig, TrainConfig, load_config
from model.training.losses import (
    BatchHardMiner,
    ContrastiveLoss,
    DistillationLoss,
    SemiHardMiner,
    TripletLoss,
)
from model.training.pool import TrainingData, load_training_data
from model.training.sampler import PKSampler

log = logging.getLogger(__name__)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def centre_teacher(teacher: np.ndarray, centring: float) -> np.ndarray:
    """Shift the descriptors away from their common mean (rows of zeros, photos without a face, stay zero)."""
    present = has_descriptor(teacher)
    shifted = teacher.copy()
    shifted[present] -= centring * teacher[present].mean(axis=0)
    return shifted


def build_model(config: TrainConfig) -> nn.Module:
    if config.init == "dlib":
        return read_dat(Path(dlib_model_path(DLIB_RESNET)))
    return build(config.architecture, config.network_arguments)


def load_teacher(student: TrainConfig) -> nn.Module:
    """The online teacher of another network than dlib's: the shipped default embedder (dlib's network, as
    model.release.import_dlib converted it), which must be a DlibResNet on the student's chip geometry."""
    teacher = Embedder.load(DEFAULT_MODEL, "cpu", augment="none", precision="fp32")
    card = teacher.card
    if card.architecture != "DlibResNet" or card.preprocess != student.pipeline.chip:
        raise ValueError(f"{DEFAULT_MODEL.name} is a {card.architecture} on {card.preprocess}; an online teacher "
                         f"must be dlib's network on the student's chip, {student.pipeline.chip}")
    return teacher.network


def fit_size(x: torch.Tensor, size: int) -> torch.Tensor:
    """A batch of chips (N, 3, S, S) at `size` px, channels last: resized (bilinear, antialiased) if S differs."""
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.contiguous(memory_format=torch.channels_last)


def build_metric_loss(config: LossConfig) -> nn.Module:
    if config.metric == "contrastive":
        return ContrastiveLoss(margin=config.contrastive_margin)
    if config.metric == "triplet":
        miner = SemiHardMiner(config.margin) if config.miner == "semi_hard" else BatchHardMiner()
        return TripletLoss(margin=config.margin, miner=miner)
    raise ValueError(f"unknown metric loss {config.metric!r}")


def warmup_cosine(step: int, warmup: int, steps: int) -> float:
    """Learning-rate factor: linear warm-up, then a cosine down to zero at `steps`."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))


class Trainer:
    def __init__(self, config: TrainConfig, data: TrainingData) -> None:
        self.config, self.data = config, data
        self.device = pick_device(config.device)
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.model = build_model(config).to(self.device).to(memory_format=torch.channels_last)
        self.input_size = config.pipeline.crop_size
        # The online teacher, frozen, judging the same augmented faces as the student: the starting network when
        # fine-tuning dlib's, the shipped default (dlib's network) for another.
        self.online_teacher = None
        if config.teacher == "online" and config.loss.distill_weight:
            teacher = copy.deepcopy(self.model) if config.init == "dlib" else load_teacher(config)
            self.online_teacher = teacher.to(self.device).to(memory_format=torch.channels_last)
            self.online_teacher.eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr,
                                           weight_decay=config.weight_decay)
        self.steps = config.steps  # a time budget may change it once, early on (fit)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: warmup_cosine(step, config.warmup, self.steps))
        self.metric_loss = build_metric_loss(config.loss)
        self.distill_loss = DistillationLoss(config.loss.relational_weight)
        self.augment = FaceAugment(config.augment, torch.Generator().manual_seed(config.seed))
        self.sampler = PKSampler(data.labels, config.p, config.k, seed=config.seed)
        ids = {name: i for i, name in enumerate(sorted(set(data.labels)))}
        self.label_ids = torch.tensor([ids[label] for label in data.labels], device=self.device)
        # The whole pool lives on the training device as uint8: a GPU step never waits for the host.
        self.crops = torch.from_numpy(data.crops).to(self.device)
        # Another network than the teacher's learns from centred targets (LossConfig.teacher_centring); dlib's
        # own network, fine-tuned, starts at its targets as they are.
        self.teacher_shift = None
        if self.online_teacher is not None and config.architecture != "DlibResNet":
            self.teacher_shift = config.loss.teacher_centring * self.teacher_mean()
        if data.teacher is None or config.teacher == "online":
            self.teacher = self.has_teacher = None
        else:
            self.teacher = torch.from_numpy(centre_teacher(data.teacher, config.loss.teacher_centring))
            self.teacher = self.teacher.to(self.device)
            self.has_teacher = torch.from_numpy(has_descriptor(data.teacher)).to(self.device)
        self.step = 0
        self.ema = [p.detach().clone() for p in self.model.parameters()] if config.ema_decay else None
        self.finished = False

    @property
    def checkpoint_path(self) -> Path:
        return self.config.out_dir / "checkpoint.pt"

    def save(self, final: bool = False) -> Path:
        """A checkpoint to resume from; the final one holds only what export needs (a third of the size)."""
        self.config.out_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "architecture": self.config.architecture,
            "network": self.config.network_arguments,
            "state_dict": self.model.state_dict(),
            **({} if final else {"optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                                 "ema": self.ema, "random": self.random_state()}),
            "final": final,
            "step": self.step,
            "steps": self.steps,
            "config": self.config.as_dict(),
            "preprocess": self.config.pipeline.chip,
            "environment": {
                "device": self.device.type,
                "gpu": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None,
                "cpus": os.cpu_count(),
                "torch": str(torch.__version__),
            },
        }
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.checkpoint_path)
        return self.checkpoint_path

    def resume(self) -> None:
        if not self.checkpoint_path.exists():
            return
        state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["state_dict"])
        self.step, self.steps = state["step"], state.get("steps", self.config.steps)
        if state.get("final"):
            log.info("%s is a finished run (step %d): nothing to resume", self.checkpoint_path, self.step)
            self.finished = True
            return
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.ema = state.get("ema")
        # The rest of the run draws the same batches and augmentations as an uninterrupted one would.
        random = state["random"]
        self.rng.bit_generator.state = random["numpy"]
        self.sampler.load_state_dict(random["sampler"])
        self.augment.generator.set_state(random["augment"].cpu())
        log.info("resumed from %s at step %d", self.checkpoint_path, self.step)

    def random_state(self) -> dict:
        return {"numpy": self.rng.bit_generator.state, "sampler": self.sampler.state_dict(),
                "augment": self.augment.generator.get_state()}

    @torch.no_grad()
    def teacher_mean(self, faces: int = 1024, batch_size: int = 128) -> torch.Tensor:
        """The online teacher's mean descriptor over clean faces of the pool, spread evenly through it."""
        picked = torch.from_numpy(np.linspace(0, len(self.data) - 1, min(faces, len(self.data))).astype(int))
        sums = []
        for chunk in picked.split(batch_size):
            x = fit_size(crops_to_tensor(self.crops[chunk.to(self.device)]), DLIB_CHIP_SIZE)
            sums.append(self.online_teacher.raw(x).float().sum(0))
        return torch.stack(sums).sum(0) / len(picked)

    def batch(self) -> tuple[np.ndarray, int]:
        metric = next(self.sampler)
        extra = self.rng.integers(0, len(self.data), self.config.distill_batch)
        return np.concatenate([metric, extra]), len(metric)

    def train_step(self) -> dict[str, float]:
        config = self.config
        self.model.train()
        indices, n_metric = self.batch()
        indices = torch.from_numpy(indices).to(self.device)
        x = self.augment(crops_to_tensor(self.crops[indices]))
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda")
        with autocast:
            embeddings = self.model(fit_size(x, self.input_size))
        embeddings = embeddings.float()
        metric = self.metric_loss(embeddings[:n_metric], self.label_ids[indices[:n_metric]])
        loss = config.loss.metric_weight * metric
        parts = {"metric": float(metric.detach())}
        if config.loss.distill_weight and self.online_teacher is not None:
            with torch.no_grad(), autocast:
                targets = self.online_teacher.raw(fit_size(x, DLIB_CHIP_SIZE)).float()
            if self.teacher_shift is not None:
                targets = targets - self.teacher_shift
            distill = self.distill_loss(embeddings, targets)
            loss = loss + config.loss.distill_weight * distill
            parts["distill"] = float(distill.detach())
        elif config.loss.distill_weight and self.has_teacher is not None:
            with_teacher = self.has_teacher[indices]
            distill = self.distill_loss(embeddings[with_teacher], self.teacher[indices][with_teacher])
            loss = loss + config.loss.distill_weight * distill
            parts["distill"] = float(distill.detach())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.schedule.step()
        if self.ema is not None:
            with torch.no_grad():
                torch._foreach_lerp_(self.ema, [p.detach() for p in self.model.parameters()],
                                     1 - self.config.ema_decay)
        self.step += 1
        return {"loss": float(loss.detach()), **parts}

    def fit(self, minutes: float | None = None) -> Path:
        """Train to the end of the schedule; with `minutes`, the schedule is sized to that much wall time.

        A time budget times the first steps (after a warm-up) and sets the run's length once, so the
        cosine still ends at zero. The checkpoint and log record the steps it chose: `--steps N` repeats it.
        """
        config = self.config
        if self.finished:
            return self.checkpoint_path
        started, seen, history = time.perf_counter(), 0, []
        log_file = config.out_dir / "log.jsonl"
        config.out_dir.mkdir(parents=True, exist_ok=True)
        first, timer = self.step, None
        while self.step < self.steps:
            parts = self.train_step()
            seen += config.p * config.k + config.distill_batch
            history.append(parts)
            if minutes and self.step - first == 20:
                timer = time.perf_counter()
            if minutes and timer and self.step - first == 120:
                per_step = (time.perf_counter() - timer) / 100
                remaining = minutes * 60 - (time.perf_counter() - started) - 30  # 30 s for the ending
                self.steps = self.step + max(0, int(remaining / per_step))
                log.info("time budget %.1f min: %.1f ms per step, the run ends at step %d",
                         minutes, 1000 * per_step, self.steps)
            if self.step % config.log_every == 0 or self.step == self.steps:
                elapsed = time.perf_counter() - started
                means = {k: float(np.mean([h[k] for h in history])) for k in history[0]}
                record = {"step": self.step, **means, "lr": self.schedule.get_last_lr()[0],
                          "images_per_s": seen / elapsed, "elapsed_s": elapsed}
                log.info(json.dumps(record))
                with log_file.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")
                history = []
            if self.step % config.checkpoint_every == 0:
                self.save()
        if self.ema is not None:
            with torch.no_grad():
                for param, average in zip(self.model.parameters(), self.ema, strict=True):
                    param.copy_(average)
        self.recalibrate_batchnorm()
        return self.save(final=True)

    @torch.no_grad()
    def recalibrate_batchnorm(self, batches: int = 100, batch_size: int = 128) -> None:
        """Replace batch norm's running statistics by population averages for the final weights.

        During training the weights move faster than the running averages (momentum 0.1) follow, and a
        first run evaluated 15 points lower on LFW with them than with recomputed statistics. Forward passes
        over clean (unaugmented) training photos fix that; nothing else changes.
        """
        norms = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:  # dlib's ResNet: its batch norm is folded into fixed affine layers
            return
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average over the passes below
        rng = np.random.default_rng(self.config.seed)
        self.model.train()
        for _ in range(batches):
            indices = torch.from_numpy(rng.integers(0, len(self.data), batch_size)).to(self.device)
            self.model(fit_size(crops_to_tensor(self.crops[indices]), self.input_size))
        for norm in norms:
            norm.momentum = 0.1
        self.model.eval()
        log.info("batch norm statistics recalibrated on %d photos", batches * batch_size)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--device")
    parser.add_argument("--data-root", dest="root")
    parser.add_argument("--cache", help="the detection and chip cache (default: the config's)")
    parser.add_argument("--pool", type=Path, help="a saved training pool (model.training.pool) instead of the archives")
    parser.add_argument("--minutes", type=float, help="size the schedule to this much wall time")
    parser.add_argument("--out-root", help="folder for the run's folder (default: the config's, runs/)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    overrides = {key: value for key, value in (("steps", args.steps), ("device", args.device),
                                               ("out_root", args.out_root)) if value}
    data_overrides = {key: value for key, value in (("root", args.root), ("cache", args.cache)) if value}
    if data_overrides:
        overrides["data"] = data_overrides
    config = load_config(args.config, overrides)
    log.info("config %s", json.dumps(config.as_dict()))
    if args.pool:
        data = TrainingData.load(args.pool).select(config.data.labelled + config.data.unlabelled)
        if data.input_size != config.pool_pipeline.crop_size:
            parser.error(f"the pool holds {data.input_size} px crops, the config wants "
                         f"{config.pool_pipeline.crop_size}")
    else:
        data = load_training_data(config)
    log.info("training pool: %d faces, %d labelled", len(data), sum(map(bool, data.labels)))
    trainer = Trainer(config, data)
    trainer.resume()
    path = trainer.fit(args.minutes)
    log.info("checkpoint written to %s", path)

