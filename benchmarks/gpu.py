"""Embedding throughput on a GPU, fp16, batch 1 to 256: the shipped model as the service runs it.

    python -m benchmarks.gpu [--model PATH] [--repeats 50]

Two figures per batch size: `service` is Embedder.embed end to end (uint8 crops from the host, unit vectors
back to the host, as a request sees it); `network` is the forward pass alone on a batch already on the GPU,
timed with CUDA events. Needs CUDA; run it where the `device` tool lends a GPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import machine, timed
from model.faces.embedder import DEFAULT_MODEL, Embedder
from model.networks import crops_to_tensor

BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def network_ms(embedder: Embedder, crops: np.ndarray, repeats: int) -> np.ndarray:
    x = crops_to_tensor(crops).to(embedder.device).half().contiguous(memory_format=torch.channels_last)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 5):
            start.record()
            embedder.network(x)
            end.record()
            end.synchronize()
            if i >= 5:
                times.append(start.elapsed_time(end))
    return np.array(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark runs where a GPU is lent")
    torch.backends.cudnn.benchmark = True
    embedder = Embedder.load(args.model, "cuda")
    size = embedder.input_size
    print(f"machine: {machine()}; GPU {torch.cuda.get_device_name()}")
    print(f"model {embedder.model_id}: {size}x{size} input, D={embedder.dim}, fp16={embedder.half}")
    print(f"{'batch':>5}  {'service p50 ms':>14} {'p95':>7} {'faces/s':>9}   {'network p50 ms':>14} {'p95':>7} "
          f"{'faces/s':>9}")
    rng = np.random.default_rng(0)
    for batch in BATCHES:
        crops = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
        service = timed(lambda crops=crops: embedder.embed(crops), args.repeats, warmup=5)
        network = network_ms(embedder, crops, args.repeats)
        print(f"{batch:>5}  {np.median(service):14.3f} {np.percentile(service, 95):7.3f} "
              f"{batch / np.median(service) * 1e3:9.0f}   {np.median(network):14.3f} "
              f"{np.percentile(network, 95):7.3f} {batch / np.median(network) * 1e3:9.0f}")


if __name__ == "__main__":
    main()
