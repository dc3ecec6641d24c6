"""What every benchmark prints first: the machine, the commit and the settings."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

# ../shared/data beside the checkout: the photos every benchmark reads.
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


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


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Synthetic templates: random directions, as unrelated faces' embeddings roughly are."""
    vectors = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def seed_gallery(database_url: str, *, model_id: str, dim: int, n: int, prefix: str = "synthetic-") -> None:
    """Migrate the database and add `n` employees with synthetic templates of `model_id`, in bulk."""
    from sqlalchemy import insert, select

    from app.gallery import db
    from app.gallery.models import Employee, Template, utcnow

    db.migrate(database_url)
    engine = db.make_engine(database_url)
    vectors = unit_vectors(n, dim)
    now = utcnow()
    with engine.begin() as connection:
        for start in range(0, n, 10_000):
            stop = min(n, start + 10_000)
            connection.execute(insert(Employee), [
                {"employee_id": f"{prefix}{i:07d}", "name": None, "created_at": now, "updated_at": now}
                for i in range(start, stop)])
            keys = dict(connection.execute(select(Employee.employee_id, Employee.id).where(
                Employee.employee_id.between(f"{prefix}{start:07d}", f"{prefix}{stop - 1:07d}"))).all())
            connection.execute(insert(Template), [
                {"employee_pk": keys[f"{prefix}{i:07d}"], "model_id": model_id, "dim": dim, "vector": vectors[i],
                 "created_at": now} for i in range(start, stop)])
    engine.dispose()
