"""The coarse first look (PipelineConfig.coarse_side): what it saves, and what it changes, photo by photo.

    python -m benchmarks.detection [--source lfw-deepfunneled celeba-wild webcam] [--limit 300]
                                   [--sizes 0 500 640 1280] [--coarse-side 320]

A random sample of each source's photos (a tar in ../shared/data, the real webcam frames of the liveness
material, or a folder or tar of your own camera's frames: `--source DIR --sizes 0`) is looked at by the
service's pipeline twice, with the coarse look and without it (coarse_side=0), at the photo's own size (0) and
enlarged (Lanczos) so that its long side is each of `sizes`, standing in for camera frames. For each size it
prints:
- the detection time per photo, boxes and landmarks (one thread; the CNN fallback off, as both would call it
  alike), and how many photos the coarse look settled;
- the recall criterion: photos without a face, with and without it (it must not add any);
- photos whose outcome under the service's face policy changed (a face, or a refusal for several faces);
- where both keep a face, the cosine between the two chips' embeddings by the shipped model.
"""

from __future__ import annotations

import argparse
import io
import random
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageSequence

from benchmarks.common import DATA, machine
from model.datasets.sources import iter_images
from model.faces.config import SERVICE_POLICY, PipelineConfig
from model.faces.embedder import DEFAULT_MODEL, Embedder
from model.faces.errors import FaceError
from model.faces.pipeline import FaceBox, FacePipeline
from model.faces.prepare import choose_face

WEBCAM = DATA / "liveness" / "webcam-head-turns.gif"


def sample(source: str, limit: int, seed: int = 0) -> list[bytes]:
    """`limit` random photos of a source: "webcam", the frames of the liveness material's real webcam (one man
    at his desk, 478x268); a folder or a .tar of one's own photos; or a tar's name in ../shared/data."""
    if source == "webcam":
        frames = []
        for frame in ImageSequence.Iterator(Image.open(WEBCAM)):
            buffer = io.BytesIO()
            frame.convert("RGB").save(buffer, "PNG")
            frames.append(buffer.getvalue())
        return random.Random(seed).sample(frames, min(limit, len(frames)))
    path = Path(source) if Path(source).exists() else DATA / f"{source}.tar"
    photos = [data for _, data in iter_images(path)]
    return random.Random(seed).sample(photos, min(limit, len(photos)))


def at_size(data: bytes, side: int) -> np.ndarray:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if side:
        scale = side / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    return np.asarray(image)


def outcome(faces: list[FaceBox], shape: tuple[int, ...]) -> FaceBox | str:
    try:
        return choose_face(faces, SERVICE_POLICY, shape)
    except FaceError as exc:
        return exc.code


def kind(chosen: FaceBox | str) -> str:
    return chosen if isinstance(chosen, str) else "face"


def compare(photos: list[bytes], side: int, embedder: Embedder, base: PipelineConfig, coarse_side: int) -> str:
    coarse, usual = FacePipeline(replace(base, coarse_side=coarse_side)), FacePipeline(replace(base, coarse_side=0))
    seconds, outcomes, changed, cosines, settled = Counter(), Counter(), 0, [], 0
    for pipeline in (usual, coarse):  # each loads its dlib models at its first photo: not in the figures
        pipeline.detect(at_size(photos[0], side), policy=SERVICE_POLICY)
    for i, data in enumerate(photos):
        rgb = at_size(data, side)
        chosen = {}
        looks = [("usual", usual), ("coarse", coarse)]
        for name, pipeline in looks[::-1] if i % 2 else looks:  # each goes first in turn
            start = time.perf_counter()
            faces = pipeline.detect(rgb, policy=SERVICE_POLICY)
            seconds[name] += time.perf_counter() - start
            chosen[name] = outcome(faces, rgb.shape)
            outcomes[name, kind(chosen[name])] += 1
        settled += bool(coarse._coarse(rgb, SERVICE_POLICY))
        a, b = chosen["usual"], chosen["coarse"]
        changed += kind(a) != kind(b)
        if isinstance(a, str) or isinstance(b, str):
            continue
        embeddings = embedder.embed(np.stack([usual.align(rgb, a), coarse.align(rgb, b)]))
        cosines.append(float(embeddings[0] @ embeddings[1]))
    n, cos = len(photos), np.array(cosines)
    codes = sorted({code for _, code in outcomes})
    counts = "; ".join(f"{code} {outcomes['usual', code]} -> {outcomes['coarse', code]}" for code in codes)
    usual, coarse = (1e3 * seconds[name] / n for name in ("usual", "coarse"))
    return (f"  {side or 'own size':>8}: detect {usual:5.1f} -> {coarse:5.1f} ms per photo; settled by the coarse "
            f"look {settled} of {n}; {counts}; outcome changed {changed}; "
            f"cosine p50 {np.median(cos):.4f}, p1 {np.percentile(cos, 1):.4f}, min {cos.min():.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", nargs="+", default=["lfw-deepfunneled", "celeba-wild", "webcam"])
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 500, 640, 1280])
    parser.add_argument("--coarse-side", type=int, default=320, help="the coarse look's side (default 320)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    embedder = Embedder.load(DEFAULT_MODEL)
    base = PipelineConfig(crop_size=embedder.input_size, chip=embedder.card.preprocess, cnn_fallback=False)
    print(f"machine: {machine()}")
    print(f"settings: coarse_side {args.coarse_side}, detect_max_side {base.detect_max_side}, HOG upsample "
          f"{base.upsample_schedule}; policy {SERVICE_POLICY.multi_face} (ratio {SERVICE_POLICY.dominant_ratio:g}), "
          f"{embedder.arithmetic} embeddings; {args.limit} random photos per source")
    for source in args.source:
        photos = sample(source, args.limit)
        print(f"{source}: without -> with the coarse look")
        for side in args.sizes:
            print(compare(photos, side, embedder, base, args.coarse_side), flush=True)


if __name__ == "__main__":
    main()
