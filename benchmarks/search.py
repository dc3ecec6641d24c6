"""Identify's search: time and memory of the gallery index at 1k to 1M templates, against the memory bound.

    python -m benchmarks.search [--sizes 1000 10000 100000 1000000] [--repeats 50] [--no-cohort]
                                [--groups 50 500]

Synthetic unit vectors at the shipped model's D, loaded the way the service loads its index at start-up,
with the shipped model's AS-norm cohort (as the service has it): the load computes every template's cohort
statistics (its time is printed), and each search ranks by the normalised score; the probe's own
statistics are part of each search's time, as they are of a request's. `--no-cohort`: plain cosine ranking.
A search reads the whole matrix once, so it cannot beat (bytes scanned) / (memory bandwidth); the
bandwidth is measured here, in the same run, as the best of a few plain streaming reads of 1 GiB.
Memory is the process's resident-set growth while the index is built (vectors, ids and names), next to
the raw bytes of the vectors at the stored precision (float32).

`--groups`: also a door's search, within one group of each of these sizes (members drawn at random from the
gallery), as /identify does for a key bound to it; its first search, which gathers the group's rows, is
timed apart (the rows are kept until the gallery or the group changes).
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np
import torch

from app.gallery.index import EmbeddingIndex
from benchmarks.common import machine, timed, unit_vectors
from model.card.schema import ModelCard, card_path
from model.faces.config import DEFAULT_MODEL


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def bandwidth_gbs() -> float:
    """The best of a few streaming reads of a 1 GiB float32 tensor, in GB/s."""
    data = torch.ones(256 * 1024 * 1024)
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        data.sum()
        best = max(best, data.numel() * 4 / (time.perf_counter() - start) / 1e9)
    matrix, query = data.view(-1, 256), torch.ones(256)
    for _ in range(5):
        start = time.perf_counter()
        torch.topk(matrix @ query, 5)
        best = max(best, data.numel() * 4 / (time.perf_counter() - start) / 1e9)
    return best


def search_times(index: EmbeddingIndex, queries: np.ndarray, k: int, repeats: int) -> np.ndarray:
    """Milliseconds per search, cycling through different queries."""
    turn = iter(range(10**9))
    return timed(lambda: index.search(queries[next(turn) % len(queries)], k), repeats)


def group_times(index: EmbeddingIndex, ids: list[str], size: int, queries: np.ndarray, k: int, repeats: int
                ) -> tuple[float, np.ndarray]:
    """(ms of the first search within a group of `size`, ms per search after it)."""
    members = np.random.default_rng(size).choice(len(ids), size, replace=False)
    index.load_groups({"door": [ids[i] for i in members]})
    started = time.perf_counter()
    index.search(queries[0], k, within={"door"})
    first = (time.perf_counter() - started) * 1e3
    turn = iter(range(10**9))
    return first, timed(lambda: index.search(queries[next(turn) % len(queries)], k, within={"door"}), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--no-cohort", action="store_true")
    parser.add_argument("--groups", type=int, nargs="*", default=[], metavar="SIZE",
                        help="also search within a group of each size")
    args = parser.parse_args()
    card = ModelCard.read(card_path(DEFAULT_MODEL))
    dim = card.embedding_dim
    cohort = None if args.no_cohort else card.cohort(DEFAULT_MODEL, card.augment)
    bandwidth = bandwidth_gbs()
    gc.collect()
    print(f"machine: {machine()}")
    print(f"settings: D={dim}, float32, top-{args.k}, CPU; memory read bandwidth measured {bandwidth:.1f} GB/s; "
          + (f"AS-norm cohort of {len(cohort.vectors)}, K={cohort.k}" if cohort else "no cohort"))
    print(f"{'templates':>10} {'p50 ms':>8} {'p95 ms':>8} {'bound ms':>9} {'p50/bound':>10} {'raw MB':>8} "
          f"{'RSS MB':>8} {'RSS/raw':>8} {'load s':>7}")
    doors = []
    for n in args.sizes:
        gc.collect()
        before = rss_bytes()
        vectors = unit_vectors(n, dim, seed=n)
        ids = [f"employee-{i:07d}" for i in range(n)]
        raw = vectors.nbytes
        index = EmbeddingIndex(dim, cohort=cohort)
        started = time.perf_counter()
        index.load(ids, [None] * n, vectors)
        load_s = time.perf_counter() - started
        del vectors  # what stays resident is what the index holds
        gc.collect()
        grown = rss_bytes() - before
        queries = unit_vectors(64, dim, seed=1)
        times = search_times(index, queries, args.k, args.repeats)
        doors += [(n, size, *group_times(index, ids, size, queries, args.k, args.repeats), np.median(times))
                  for size in args.groups if size <= n]
        del ids
        bound = raw / (bandwidth * 1e9) * 1e3
        print(f"{n:>10} {np.median(times):8.2f} {np.percentile(times, 95):8.2f} {bound:9.2f} "
              f"{np.median(times) / bound:10.2f} {raw / 1e6:8.1f} {grown / 1e6:8.1f} {grown / raw:8.2f} "
              f"{load_s:7.1f}")
        del index
        gc.collect()
    if doors:
        print(f"\n{'templates':>10} {'group':>7} {'first ms':>9} {'p50 ms':>8} {'p95 ms':>8} {'whole p50':>10}")
        for n, size, first, times, whole in doors:
            print(f"{n:>10} {size:>7} {first:9.2f} {np.median(times):8.3f} {np.percentile(times, 95):8.3f} "
                  f"{whole:10.2f}")


if __name__ == "__main__":
    main()
