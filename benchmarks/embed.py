"""Embedding one aligned face on one CPU core: facegate's network beside dlib's ResNet, in one run.

    python -m benchmarks.embed [--photo PATH] [--repeats 200]

Both embed the same detected face of the same photo: ours from its aligned crop, dlib from the same five
landmarks (dlib makes its own 150x150 chip, which is part of its embedding cost).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from app.faces import FacePipeline, PipelineConfig, decode_image
from app.faces.embedder import DEFAULT_MODEL, Embedder
from benchmarks.common import DATA, machine, summary, timed
from model.reference import DlibEmbedder

DEFAULT_PHOTO = DATA / "testfaces" / "lfw" / "Tony_Blair" / "Tony_Blair_0001.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    embedder = Embedder.load(args.model, "cpu")
    pipeline = FacePipeline(PipelineConfig(crop_size=embedder.input_size))
    rgb = decode_image(args.photo.read_bytes(), max_pixels=50_000_000)
    face = pipeline.detect(rgb)[0]
    crop = pipeline.align(rgb, face)[None]
    dlib = DlibEmbedder()

    print(f"machine: {machine()}")
    print(f"photo: {args.photo.name} {rgb.shape[1]}x{rgb.shape[0]}, face {face.width}x{face.height}; "
          f"model {embedder.model_id} ({embedder.input_size}x{embedder.input_size} input, D={embedder.dim})")
    ours = timed(lambda: embedder.embed(crop), args.repeats)
    align = timed(lambda: pipeline.align(rgb, face), args.repeats)
    reference = timed(lambda: dlib.embed(rgb, face), max(20, args.repeats // 5))
    print(f"facegate embed (1 core): {summary(ours)}")
    print(f"facegate align         : {summary(align)}")
    print(f"dlib embed     (1 core): {summary(reference)}")
    print(f"dlib / facegate embed  : {np.median(reference) / np.median(ours):.1f}x")


if __name__ == "__main__":
    main()
