"""Where every millisecond of one photo goes: facegate's pipeline beside face_recognition's (dlib), one core.

    python -m benchmarks.stages [--photo PATH] [--repeats 30]

Three photo sizes: the 250x250 LFW photo itself, and the same photo enlarged to 500 and 1280 px on the
long side (Lanczos, saved as JPEG quality 90), standing in for camera frames of those sizes. Stages:
- decode: JPEG bytes -> RGB array (ours: decode_image with its guards; dlib's: PIL, as face_recognition does);
- detect: HOG boxes (ours on a copy bounded to the configured side, dlib's on the full photo, upsample 1);
- landmarks: dlib's 5-point model, the same in both;
- align: ours warps to the template; dlib's chip is made inside its embedding call, so it reads "-";
- embed: ours is the shipped network, dlib's is compute_face_descriptor (num_jitters=1, face_recognition's
  default).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import dlib
import numpy as np
import torch
from PIL import Image

from app.core.config import Settings
from benchmarks.common import machine, timed
from benchmarks.embed import DEFAULT_PHOTO
from model.faces.decode import decode_image
from model.faces.embedder import DEFAULT_MODEL, Embedder
from model.faces.pipeline import FacePipeline, dlib_model_path

SIZES = (250, 500, 1280)


def photo_bytes(original: Path, side: int) -> bytes:
    """The photo with its long side at `side` px, as JPEG bytes (the original's own bytes at its size)."""
    image = Image.open(original).convert("RGB")
    if max(image.size) == side:
        return original.read_bytes()
    scale = side / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


class Reference:
    """face_recognition's pipeline, stage by stage (face_recognition.api does exactly these calls)."""

    def __init__(self) -> None:
        self.detector = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(dlib_model_path("shape_predictor_5_face_landmarks.dat"))
        self.encoder = dlib.face_recognition_model_v1(
            dlib_model_path("dlib_face_recognition_resnet_model_v1.dat"))

    @staticmethod
    def decode(data: bytes) -> np.ndarray:
        return np.array(Image.open(io.BytesIO(data)).convert("RGB"))

    def detect(self, rgb: np.ndarray):  # noqa: ANN201 - dlib's type
        return self.detector(rgb, 1)

    def shape(self, rgb: np.ndarray, rect):  # noqa: ANN001, ANN201
        return self.landmarks(rgb, rect)

    def embed(self, rgb: np.ndarray, shape) -> np.ndarray:  # noqa: ANN001
        return np.array(self.encoder.compute_face_descriptor(rgb, shape, 1))


def stage_times(pipeline: FacePipeline, embedder: Embedder, reference: Reference, data: bytes,
                repeats: int) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    rgb = decode_image(data, max_pixels=50_000_000)
    face = pipeline.detect(rgb)[0]
    ours_boxes = pipeline.detect_boxes(rgb)
    rect = dlib.rectangle(face.x, face.y, face.x + face.width, face.y + face.height)
    chips = pipeline.align(rgb, face, embedder.views.to_align)[None]
    theirs = reference.detect(rgb)
    if not theirs:
        raise SystemExit("dlib's HOG found no face in the benchmark photo")
    shape = reference.shape(rgb, theirs[0])
    few = max(5, repeats // 5)  # dlib's embedding is slow; fewer repeats keep the run short
    return {
        "decode": (timed(lambda: decode_image(data, max_pixels=50_000_000), repeats),
                   timed(lambda: reference.decode(data), repeats)),
        "detect": (timed(lambda: pipeline.detect_boxes(rgb), repeats), timed(lambda: reference.detect(rgb), few)),
        "landmarks": (timed(lambda: pipeline.landmarks(rgb, ours_boxes[0][:4]), repeats),
                      timed(lambda: reference.shape(rgb, rect), repeats)),
        "align": (timed(lambda: pipeline.align(rgb, face), repeats), None),
        "embed": (timed(lambda: embedder.embed(chips), repeats), timed(lambda: reference.embed(rgb, shape), few)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = Settings()
    embedder = Embedder.load(args.model, "cpu")
    pipeline = FacePipeline(settings.pipeline_config(embedder.input_size, embedder.card.preprocess))
    reference = Reference()
    print(f"machine: {machine()}")
    print(f"settings: one core; ours detect_max_side={pipeline.config.detect_max_side}, HOG upsample "
          f"{pipeline.config.upsample_schedule}; model {embedder.model_id} ({embedder.input_size} px, augment "
          f"{embedder.augment}); "
          f"dlib HOG upsample 1, num_jitters 1; {args.repeats} repeats (dlib detect and embed: fewer)")
    for side in SIZES:
        data = photo_bytes(args.photo, side)
        times = stage_times(pipeline, embedder, reference, data, args.repeats)
        size = Image.open(io.BytesIO(data)).size
        print(f"\n{size[0]}x{size[1]} px ({len(data) // 1024} kB)   median ms (p95)")
        print(f"  {'stage':<10} {'facegate':>16} {'dlib':>18} {'dlib/ours':>10}")
        total_ours = total_dlib = 0.0
        for stage, (ours, theirs) in times.items():
            total_ours += np.median(ours)
            mine = f"{np.median(ours):7.2f} ({np.percentile(ours, 95):6.2f})"
            if theirs is None:
                print(f"  {stage:<10} {mine:>16} {'(inside embed)':>18}")
                continue
            total_dlib += np.median(theirs)
            other = f"{np.median(theirs):7.2f} ({np.percentile(theirs, 95):6.2f})"
            print(f"  {stage:<10} {mine:>16} {other:>18} {np.median(theirs) / np.median(ours):9.1f}x")
        print(f"  {'total':<10} {total_ours:7.2f}{'':9} {total_dlib:7.2f}{'':11} {total_dlib / total_ours:9.1f}x")


if __name__ == "__main__":
    main()
