"""The training pool: aligned crops, identities and dlib teacher descriptors, in memory or in one file.

    python -m model.training.pool model/configs/mfn64-gpu.toml --out .pool/pool.npz

The protocol's pool is CelebA, the LFW people in no View 2 pair, and (unlabelled) UTKFace. Building it
needs the archives, dlib and the crop cache (model.datasets); a saved pool needs none of them. That is how a
run goes to a lent GPU machine, whose upload is limited: the crops travel as WebP (quality 90: 1.4 kB per
64 px face, a mean error of about 2 grey levels, far below what augmentation adds) and the descriptors as
float16. Pool files hold research data: they live outside the repository, like the cache.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from model.datasets.sources import VALIDATION_SOURCES, aligned_crops, detect_source, lfw_people_in_pairs, read_lfw_pairs
from model.training.config import TrainConfig, load_config

log = logging.getLogger(__name__)

POOL_FORMAT = 2  # 2: the validation identities are held out, and the header names the chip geometry


@dataclass
class TrainingData:
    crops: np.ndarray  # (N, S, S, 3) uint8 aligned faces
    labels: list[str]  # identity, "" when unknown
    teacher: np.ndarray | None  # (N, 128) float32 raw dlib descriptors, or None without distillation
    sources: np.ndarray | None = None  # (N,) str: the archive each face came from

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_size(self) -> int:
        return int(self.crops.shape[1])

    def select(self, archives: tuple[str, ...]) -> TrainingData:
        """The faces that came from `archives` (a config's data sources: the no-UTKFace ablation, say)."""
        if self.sources is None:
            raise ValueError("this pool does not record its sources")
        missing = set(archives) - set(self.sources)
        if missing:
            raise ValueError(f"the pool holds no faces from {sorted(missing)}")
        return self.subset(np.isin(self.sources, list(archives)))

    def with_unlabelled(self, limit: int, seed: int = 0) -> TrainingData:
        """Every labelled face and at most `limit` unlabelled ones, a random choice: a pool that must fit a
        device's upload beside the repository."""
        unlabelled = np.flatnonzero([not label for label in self.labels])
        keep = np.ones(len(self), bool)
        if len(unlabelled) > limit:
            keep[np.random.default_rng(seed).choice(unlabelled, len(unlabelled) - limit, replace=False)] = False
        return self.subset(keep)

    def subset(self, keep: np.ndarray) -> TrainingData:
        """The faces where `keep` (a boolean mask) is true."""
        return TrainingData(self.crops[keep], [label for label, k in zip(self.labels, keep, strict=True) if k],
                            None if self.teacher is None else self.teacher[keep],
                            None if self.sources is None else self.sources[keep])

    def save(self, path: Path, *, quality: int = 90, meta: dict | None = None) -> None:
        """One .npz: WebP bytes end to end with their offsets, labels, float16 descriptors and a JSON header."""
        encoded = []
        for crop in self.crops:
            buffer = io.BytesIO()
            Image.fromarray(crop).save(buffer, "WEBP", quality=quality, method=6)
            encoded.append(np.frombuffer(buffer.getvalue(), np.uint8))
        offsets = np.cumsum([0] + [len(e) for e in encoded])
        header = {"format": POOL_FORMAT, "input_size": self.input_size,
                  "quality": quality, **(meta or {})}
        arrays = {"images": np.concatenate(encoded), "offsets": offsets, "labels": np.array(self.labels),
                  "header": np.array(json.dumps(header))}
        if self.sources is not None:
            arrays["sources"] = self.sources
        if self.teacher is not None:
            arrays["teacher"] = self.teacher.astype(np.float16)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **arrays)  # the WebP bytes stay as they are; labels and sources shrink
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> TrainingData:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            if header["format"] != POOL_FORMAT:
                raise ValueError(f"{path}: pool format {header['format']}, this code reads {POOL_FORMAT}: "
                                 "rebuild it with model.training.pool")
            images, offsets = data["images"], data["offsets"]
            size = header["input_size"]
            crops = np.empty((len(offsets) - 1, size, size, 3), np.uint8)
            for i in range(len(crops)):
                with Image.open(io.BytesIO(images[offsets[i]:offsets[i + 1]].tobytes())) as image:
                    crops[i] = np.asarray(image.convert("RGB"))
            teacher = data["teacher"].astype(np.float32) if "teacher" in data else None
            sources = data["sources"] if "sources" in data else None
            return cls(crops, [str(label) for label in data["labels"]], teacher, sources)


def load_training_data(config: TrainConfig) -> TrainingData:
    """The protocol's training pool, read through the crop cache (which model.datasets fills). dlib's descriptors
    come with it for a cached teacher; an online teacher makes its own targets."""
    root, cache = Path(config.data.root), Path(config.data.cache).expanduser()
    held_out = lfw_people_in_pairs(read_lfw_pairs(root / config.data.pairs))
    validation = set(detect_source(root / VALIDATION_SOURCES[0], cache=cache, with_teacher=False).labels)
    crops, labels, teacher, sources = [], [], [], []
    for archive in config.data.labelled + config.data.unlabelled:
        source = root / archive
        labelled = archive in config.data.labelled
        faces = detect_source(source, cache=cache, labelled=labelled, with_teacher=config.teacher == "cached")
        test_or_validation = held_out if "lfw" in archive else validation if "celeba" in archive else set()
        keep = faces.found & ~np.isin(faces.labels, sorted(test_or_validation))
        # CelebA identity numbers are shared by both CelebA archives, so the prefix is the dataset family.
        family = archive.split("-")[0]
        crops.append(aligned_crops(source, faces, config.pool_pipeline, cache=cache)[keep])
        labels += [f"{family}/{label}" if label else "" for label in faces.labels[keep]]
        teacher.append(faces.teacher[keep])
        sources.append(np.full(int(keep.sum()), archive))
        log.info("%s: %d faces used (%d identities)", archive, int(keep.sum()),
                 len(set(faces.labels[keep]) - {""}))
    descriptors = np.concatenate(teacher) if config.teacher == "cached" else None
    return TrainingData(np.concatenate(crops), labels, descriptors, np.concatenate(sources))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--unlabelled", type=int, help="keep at most this many unlabelled faces (a random choice), "
                        "so that the file fits a device upload beside the repository")
    args = parser.parse_args(argv)
    if args.unlabelled is not None and args.unlabelled < 0:
        parser.error("--unlabelled must be 0 or more")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = load_config(args.config)
    data = load_training_data(config)
    if args.unlabelled is not None:
        data = data.with_unlabelled(args.unlabelled, seed=config.seed)
    meta = {"data": config.as_dict()["data"], "chip": config.pool_pipeline.chip, "unlabelled": args.unlabelled}
    data.save(args.out, quality=args.quality, meta=meta)
    log.info("%d faces (%d labelled) -> %s, %.1f MB", len(data), sum(map(bool, data.labels)), args.out,
             args.out.stat().st_size / 1e6)


if __name__ == "__main__":
    main()
