"""The CNN fallback detector under its pixel budget: what it finds among HOG's misses, and what it costs.

    python -m benchmarks.fallback [--source celeba-wild lfw-deepfunneled celeba-aligned] [--limit 3000]
                                  [--budgets 40000 70000 100000 160000 250000]

For each source (a tar in ../shared/data), the photos where HOG finds no face (both passes of its adaptive
upsampling) are found first; the CNN then looks at each of them under every budget
(PipelineConfig.cnn_max_pixels). It prints, per budget, how many it found a face in (of 40 px or more in the
photo, the service's smallest) and its wall time per photo, on one thread, as the service's fallback process
runs it. The budget is chosen on CelebA-wild, the training side; LFW's figure is only reported.
"""

from __future__ import annotations

import argparse
import io
import random
import tarfile
import time
from dataclasses import replace

import numpy as np
import torch
from PIL import Image

from benchmarks.common import DATA, machine
from model.faces.config import SERVICE_POLICY, PipelineConfig
from model.faces.pipeline import FacePipeline


def hog_misses(source: str, limit: int, pipeline: FacePipeline, seed: int = 0) -> tuple[int, list[np.ndarray]]:
    """(photos looked at, those where HOG finds no face), from a random sample of `limit` photos."""
    with tarfile.open(DATA / f"{source}.tar") as archive:
        members = [m for m in archive.getmembers() if m.isfile() and m.name.endswith(".jpg")]
        random.Random(seed).shuffle(members)
        misses = []
        for member in members[:limit]:
            rgb = np.asarray(Image.open(io.BytesIO(archive.extractfile(member).read())).convert("RGB"))
            if not any(pipeline._hog(rgb, upsample) for upsample in pipeline.config.upsample_schedule):
                misses.append(rgb)
    return min(limit, len(members)), misses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", nargs="+", default=["celeba-wild", "lfw-deepfunneled", "celeba-aligned"])
    parser.add_argument("--limit", type=int, default=3000, help="photos sampled per source")
    parser.add_argument("--budgets", type=int, nargs="+", default=[40_000, 70_000, 100_000, 160_000, 250_000])
    args = parser.parse_args()
    torch.set_num_threads(1)  # as model.faces.fallback's process
    print(machine())
    print(f"shipped budget: {PipelineConfig.cnn_max_pixels:,} px; a face counts from {SERVICE_POLICY.min_face_size} px")
    hog = FacePipeline()
    for source in args.source:
        looked, misses = hog_misses(source, args.limit, hog)
        print(f"\n{source}: HOG finds no face in {len(misses)} of {looked} photos")
        if not misses:
            continue
        for budget in args.budgets:
            pipeline = FacePipeline(replace(PipelineConfig(), cnn_max_pixels=budget))
            pipeline._cnn(misses[0])  # the detector's first use builds it
            found, times = 0, []
            for rgb in misses:
                start = time.perf_counter()
                faces = pipeline._cnn(rgb)
                times.append((time.perf_counter() - start) * 1e3)
                found += any(min(f[2] - f[0], f[3] - f[1]) >= SERVICE_POLICY.min_face_size for f in faces)
            shipped = "  <- shipped" if budget == PipelineConfig.cnn_max_pixels else ""
            print(f"  budget {budget:>9,} px: found {found:3d}/{len(misses)}   ms per photo p50 "
                  f"{np.median(times):6.0f}  max {max(times):6.0f}{shipped}")


if __name__ == "__main__":
    main()
