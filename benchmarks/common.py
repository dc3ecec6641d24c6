"""What every benchmark prints first: the machine, the commit and the settings."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Callable

import numpy as np
import torch


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}, Python "
            f"{platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"commit {commit or 'unknown'}")


def timed(fn: Callable[[], object], repeats: int, warmup: int = 3) -> np.ndarray:
    """Milliseconds per call over `repeats` calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return np.array(times)


def summary(times: np.ndarray) -> str:
    return f"median {np.median(times):7.2f} ms   p95 {np.percentile(times, 95):7.2f} ms   (n={len(times)})"
