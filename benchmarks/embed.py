"""Embedding one detected face on one CPU core: facegate's models beside dlib's, in one run.

    python -m benchmarks.embed [--photo PATH] [--repeats 100]

Every row starts from the same detected face of the same photo (its five landmarks) and ends with a unit
vector: the chip (or the test-time views) is made, then embedded. dlib's `compute_face_descriptor` makes its
own 150x150 chip too, so the two costs compare like for like. The default configuration is the default
model with the augmentation its card serves with, in fp32; bf16 and int8 are FACEGATE_PRECISION's options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import DATA, machine, summary, timed
from model.evaluation.evaluate import pipeline_config
from model.faces.config import DEFAULT_MODEL, FAST_MODEL
from model.faces.decode import decode_image
from model.faces.embedder import Embedder
from model.faces.pipeline import FacePipeline
from model.faces.reference import DlibEmbedder

DEFAULT_PHOTO = DATA / "testfaces" / "lfw" / "Tony_Blair" / "Tony_Blair_0001.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rgb = decode_image(args.photo.read_bytes(), max_pixels=50_000_000)
    face = FacePipeline().detect(rgb)[0]
    dlib = DlibEmbedder()
    print(f"machine: {machine()}")
    print(f"photo: {args.photo.name} {rgb.shape[1]}x{rgb.shape[0]}, face {face.width}x{face.height}")
    reference = np.median(timed(lambda: dlib.embed(rgb, face), max(20, args.repeats // 2)))
    print(f"{'dlib compute_face_descriptor':<44} median {reference:7.2f} ms")
    rows = [(DEFAULT_MODEL, augment, "fp32") for augment in ("none", "flip", "views")] \
        + [(DEFAULT_MODEL, "flip", precision) for precision in ("bf16", "int8")] + [(FAST_MODEL, "none", "fp32")]
    for model, augment, precision in rows:
        embedder = Embedder.load(model, "cpu", augment, precision)
        pipeline = FacePipeline(pipeline_config(embedder))
        views = embedder.views.to_align

        def embed_one() -> np.ndarray:
            return embedder.embed(pipeline.align(rgb, face, views)[None])  # noqa: B023 - called in this pass

        times = timed(embed_one, args.repeats)
        default = " (default)" if model == DEFAULT_MODEL and augment == embedder.card.augment \
            and precision == "fp32" else ""
        label = f"{embedder.card.architecture} {precision} augment={augment}{default}"
        print(f"{label:<44} {summary(times)}   = {np.median(times) / reference:.3f} of dlib's time")
    # The same check again at the end: dlib's time drifts with the machine's load.
    print(f"{'dlib compute_face_descriptor (again)':<44} "
          f"{summary(timed(lambda: dlib.embed(rgb, face), max(20, args.repeats // 2)))}")


if __name__ == "__main__":
    main()
