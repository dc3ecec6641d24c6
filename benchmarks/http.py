"""/verify and /identify over real HTTP: a uvicorn server on SQLite with a gallery of 1,000 employees.

    python -m benchmarks.http [--requests 120] [--concurrency 1 4 16] [--no-reference]

The gallery holds the ten LFW people of ../shared/data/testfaces (enrolled through /enroll) and synthetic
templates for the rest. Probes are their other 250x250 photos, so verify sees genuine and impostor claims.
Clients are threads with one keep-alive connection each; every request must succeed (no error is allowed).
In the same run, face_recognition's dlib pipeline (decode, HOG upsample 1, 5 landmarks, ResNet with
num_jitters 1) times the same photos: one photo at a time, and as many as 2 processes do per second.
The load generator shares the machine with the server, as it would on a single host.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from benchmarks.common import DATA, machine, seed_gallery
from benchmarks.stages import Reference
from model.faces.embedder import DEFAULT_MODEL, Embedder

TESTFACES = DATA / "testfaces" / "lfw"
GALLERY = 1000


def start_server(database_url: str, port: int, env: dict[str, str]) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning"],
        env={**os.environ, "FACEGATE_DATABASE_URL": database_url, **env})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            raise SystemExit("the server exited during start-up")
        time.sleep(0.5)
    server.terminate()
    raise SystemExit("the server did not become ready in 120 s")


def make_keys(database_url: str) -> dict[str, str]:
    """An admin and a verify key: the benchmark runs with authentication on, as a deployment does."""
    from app.gallery import db
    from app.keys import create_key

    engine = db.make_engine(database_url)
    with db.make_sessionmaker(engine)() as session:
        keys = {scope: create_key(session, scope, "benchmark")[0] for scope in ("admin", "verify")}
    engine.dispose()
    return keys


def load(base: str, requests: list[tuple[str, dict, bytes]], concurrency: int,
         key: str) -> tuple[np.ndarray, float, int]:
    """Latencies (ms), wall seconds and error count for `requests` sent by `concurrency` clients."""
    local = threading.local()

    def send(request: tuple[str, dict, bytes]) -> tuple[float, bool]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base, timeout=60, headers={"X-API-Key": key})
        path, form, photo = request
        start = time.perf_counter()
        response = local.client.post(path, data=form, files={"image": ("probe.jpg", photo, "image/jpeg")})
        return (time.perf_counter() - start) * 1e3, response.status_code == 200

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, requests[:4 * concurrency]))  # warm every connection and both sides' threads
        started = time.perf_counter()
        results = list(pool.map(send, requests))
        wall = time.perf_counter() - started
    return np.array([r[0] for r in results]), wall, sum(not r[1] for r in results)


_reference: list[Reference] = []  # one per process, made on first use


def reference_photo(data: bytes) -> int:
    """face_recognition's whole pipeline for one photo; returns the number of faces embedded."""
    if not _reference:
        _reference.append(Reference())
    reference = _reference[0]
    rgb = reference.decode(data)
    faces = reference.detect(rgb)
    for rect in faces:
        reference.embed(rgb, reference.shape(rgb, rect))
    return len(faces)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=120, help="requests per endpoint and concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--no-reference", action="store_true", help="skip the dlib pipeline (on a GPU machine)")
    parser.add_argument("--photos", type=Path, default=TESTFACES, help="one folder of photos per person")
    args = parser.parse_args()

    people = sorted(p for p in args.photos.iterdir() if p.is_dir())
    photos = {p.name: sorted(p.glob("*.jpg")) for p in people}
    probes = [(name, path.read_bytes()) for name, paths in photos.items() for path in paths[1:]]
    embedder = Embedder.load(DEFAULT_MODEL, "cpu")  # only for its id and dimension
    env = {k: v for k, v in os.environ.items() if k.startswith("FACEGATE_")}
    print(f"machine: {machine()}")
    print(f"settings: gallery {GALLERY} employees on SQLite, {len(probes)} probe photos (250x250), "
          f"{args.requests} requests per cell, server env {env or 'defaults'}")

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        seed_gallery(url, model_id=embedder.model_id, dim=embedder.dim, n=GALLERY - len(people))
        keys = make_keys(url)
        # Genuine probes fail now and then; the brute-force lockout would turn those claims into 429s.
        server = start_server(url, args.port, {"FACEGATE_VERIFY_MAX_FAILURES": "0",
                                               "FACEGATE_VERIFY_MAX_FAILURES_PER_KEY": "0"})
        base = f"http://127.0.0.1:{args.port}"
        try:
            with httpx.Client(base_url=base, timeout=60, headers={"X-API-Key": keys["admin"]}) as client:
                for name, paths in photos.items():
                    response = client.post("/enroll", data={"employee_id": name},
                                           files={"image": ("ref.jpg", paths[0].read_bytes(), "image/jpeg")})
                    response.raise_for_status()
                ready = client.get("/readyz").json()
            print(f"server ready: {ready}")
            rng = np.random.default_rng(0)
            results = {}
            for endpoint in ("verify", "identify"):
                for concurrency in args.concurrency:
                    chosen = rng.integers(0, len(probes), args.requests)
                    requests = [(f"/{endpoint}", {"employee_id": probes[i][0]} if endpoint == "verify" else {},
                                 probes[i][1]) for i in chosen]
                    times, wall, errors = load(base, requests, concurrency, keys["verify"])
                    results[endpoint, concurrency] = (times, len(requests) / wall)
                    print(f"/{endpoint:<8} c={concurrency:<3} p50 {np.median(times):7.1f} ms  p95 "
                          f"{np.percentile(times, 95):7.1f} ms  p99 {np.percentile(times, 99):7.1f} ms  "
                          f"{len(requests) / wall:6.1f} req/s  errors {errors}")
                    if errors:
                        raise SystemExit(f"{errors} requests failed")
        finally:
            server.terminate()
            server.wait()

    if args.no_reference:
        return
    photos_only = [photo for _, photo in probes]
    for photo in photos_only[:3]:
        reference_photo(photo)  # load the models, warm the caches
    single = []
    for photo in photos_only:
        start = time.perf_counter()
        reference_photo(photo)
        single.append((time.perf_counter() - start) * 1e3)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(reference_photo, photos_only[:4])
        started = time.perf_counter()
        pool.map(reference_photo, photos_only * 2, chunksize=1)
        dlib_rate = 2 * len(photos_only) / (time.perf_counter() - started)
    dlib_p50 = float(np.median(single))
    print(f"dlib pipeline, one photo at a time: p50 {dlib_p50:.1f} ms, p95 {np.percentile(single, 95):.1f} ms; "
          f"2 processes: {dlib_rate:.1f} photos/s")
    if (("verify", 1) in results) and (("verify", 4) in results):
        verify_p50 = float(np.median(results["verify", 1][0]))
        print(f"/verify p50 at c=1 is {verify_p50 / dlib_p50:.2f} of dlib's per-photo time (target <= 0.33)")
        print(f"/verify req/s at c=4 is {results['verify', 4][1] / dlib_rate:.2f}x dlib in 2 processes "
              f"(target >= 3)")


if __name__ == "__main__":
    main()
