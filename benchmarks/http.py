"""/verify and /identify over real HTTP: a uvicorn server on SQLite with a gallery of 1,000 employees.

    python -m benchmarks.http [--requests 120] [--concurrency 1 4 16] [--no-reference]

The gallery holds the ten LFW people of ../shared/data/testfaces (enrolled through /enroll) and synthetic
templates for the rest. Probes are their other 250x250 photos, so verify sees genuine and impostor claims.
Clients are threads with one keep-alive connection each, spread over `--client-processes` processes (one
Python process sends about a thousand of these uploads a second at most); every request must succeed (no
error is allowed). In the same run, face_recognition's dlib pipeline (decode, HOG upsample 1, 5 landmarks,
ResNet with num_jitters 1) times the same photos: one photo at a time, and as many as 2 processes do per
second. The load generator shares the machine with the server, as it would on a single host.

Beside the latencies, each cell says where the time went, so that a ceiling can be told from a limit: the
CPU time per request of the server (all its worker processes) and of the clients, how many of the machine's
cores that kept busy, and, where nvidia-smi answers, how busy the GPU was. After each c=1 cell, a profile of one
request (exact with one worker): each stage's mean from the server's facegate_stage_seconds, and what the
server's CPU spent outside them. Photos the face policy refuses (422) are counted by code, not as errors; the
run ends with what the CNN fallback detector did.

    --photos DIR   another set of people (one folder each: the first photo enrolls, the others probe)
    --workers N    N server processes, as WEB_CONCURRENCY=N scripts/serve.sh runs them
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.common import DATA, machine, seed_gallery
from benchmarks.stages import Reference
from model.faces.embedder import DEFAULT_MODEL, Embedder

TESTFACES = DATA / "testfaces" / "lfw"
GALLERY = 1000


def start_server(database_url: str, port: int, env: dict[str, str], workers: int = 1) -> subprocess.Popen:
    """uvicorn on the app, in `workers` processes (several need PROMETHEUS_MULTIPROC_DIR in `env`, as
    scripts/serve.sh sets it, to answer one sum of their metrics)."""
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--workers", str(workers)],
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
    from app.services.keys import create_key

    engine = db.make_engine(database_url)
    with db.make_sessionmaker(engine)() as session:
        keys = {scope: create_key(session, scope, "benchmark")[0] for scope in ("admin", "verify")}
    engine.dispose()
    return keys


Request = tuple[str, dict, bytes]  # path, form fields, photo


@dataclass(frozen=True)
class Cell:
    """One endpoint at one concurrency: what the clients saw, and what it cost."""

    latencies: np.ndarray  # ms
    wall: float  # seconds, from the first client's start to the last one's end
    errors: int  # answers other than 200 and 422, and failed connections
    # Photos the face policy refused (422), by code; no_face: a HOG miss whose CNN fallback was skipped, late,
    # or found none.
    refused: dict[str, int]
    server_cpu: float  # CPU seconds of the server's processes
    client_cpu: float  # CPU seconds of the client processes
    gpu_busy: float | None  # mean GPU utilisation (%), where nvidia-smi answers

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall

    def report(self) -> str:
        n = len(self.latencies)
        busy = (self.server_cpu + self.client_cpu) / self.wall
        gpu = "" if self.gpu_busy is None else f", GPU {self.gpu_busy:.0f} % busy"
        return (f"p50 {np.median(self.latencies):7.1f} ms  p95 {np.percentile(self.latencies, 95):7.1f} ms  "
                f"p99 {np.percentile(self.latencies, 99):7.1f} ms  {self.rate:6.1f} req/s  errors {self.errors}  "
                f"refused {self.refused or 0}\n"
                f"{'':15}CPU per request: server {self.server_cpu / n * 1e3:.1f} ms, clients "
                f"{self.client_cpu / n * 1e3:.1f} ms; {busy:.1f} of {os.cpu_count()} cores busy{gpu}")


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user and system) used so far by a process and its live descendants, from Linux's /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
    return total


class GpuBusy:
    """Samples the GPU's utilisation every 100 ms while in the block (nothing where nvidia-smi is missing)."""

    def __enter__(self) -> GpuBusy:
        self.samples: list[float] = []
        smi = shutil.which("nvidia-smi")
        self._process = smi and subprocess.Popen(
            [smi, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "100"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process:
            self._process.terminate()
            out, _ = self._process.communicate()
            self.samples = [float(line) for line in out.split() if line.replace(".", "", 1).isdigit()]

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


def _client(base: str, requests: list[Request], threads: int, key: str, ready: Any, out: Any) -> None:
    """One client process: warm its connections, wait for the others, send its share, report."""
    local = threading.local()

    def send(request: Request) -> tuple[float, str]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base, timeout=60, headers={"X-API-Key": key})
        path, form, photo = request
        start = time.perf_counter()
        response = local.client.post(path, data=form, files={"image": ("probe.jpg", photo, "image/jpeg")})
        elapsed = (time.perf_counter() - start) * 1e3
        if response.status_code == 422:
            return elapsed, response.json()["error"]["code"]
        return elapsed, "ok" if response.status_code == 200 else "error"

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(send, requests[:4 * threads]))  # warm every connection and both sides' threads
        ready.wait()
        cpu = time.process_time()
        started = time.time()
        results = list(pool.map(send, requests))
        out.put(([r[0] for r in results], [r[1] for r in results if r[1] != "ok"], started, time.time(),
                 time.process_time() - cpu))


def load(base: str, requests: list[Request], concurrency: int, key: str, server_pid: int,
         processes: int = 1) -> Cell:
    """Send `requests` with `concurrency` clients in `processes` processes (at most one per client)."""
    processes = max(1, min(processes, concurrency))
    context = multiprocessing.get_context("fork")
    ready, out = context.Barrier(processes + 1), context.Queue()
    shares = [requests[i::processes] for i in range(processes)]
    threads = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    clients = [context.Process(target=_client, args=(base, share, n, key, ready, out))
               for share, n in zip(shares, threads, strict=True)]
    for client in clients:
        client.start()
    ready.wait()
    server_cpu = process_tree_cpu(server_pid)
    with GpuBusy() as gpu:
        reports = [out.get() for _ in clients]
    server_cpu = process_tree_cpu(server_pid) - server_cpu
    for client in clients:
        client.join()
    latencies = np.concatenate([np.array(r[0]) for r in reports])
    wall = max(r[3] for r in reports) - min(r[2] for r in reports)
    outcomes = Counter(outcome for r in reports for outcome in r[1])
    errors = outcomes.pop("error", 0)
    return Cell(latencies, wall, errors, dict(sorted(outcomes.items())), server_cpu, sum(r[4] for r in reports),
                gpu.mean)


# The stages of a photo's way to a decision, as facegate_stage_seconds names them; "detect" includes its fallback.
# The decision's own work is "score" for /verify (the probe's AS-norm statistics against the cohort) and
# "search" for /identify (those and the ranking).
PIPELINE_STAGES = ("decode", "detect", "align", "quality", "embed")
DECISION_STAGES = ("score", "search")


def samples(metrics: str, name: str, label: str) -> dict[str, float]:
    """The values of the samples called `name` in the server's metrics, by the value of their `label`."""
    return {sample.labels[label]: sample.value for family in text_string_to_metric_families(metrics)
            for sample in family.samples if sample.name == name}


def stage_totals(metrics: str) -> dict[str, tuple[float, float]]:
    """(seconds, count) of every stage of facegate_stage_seconds so far."""
    seconds = samples(metrics, "facegate_stage_seconds_sum", "stage")
    counts = samples(metrics, "facegate_stage_seconds_count", "stage")
    return {stage: (seconds[stage], counts[stage]) for stage in seconds}


def profile(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]], cell: Cell) -> str:
    """Where one request's time went, at c=1: each stage's mean (wall time, which is its CPU time with one
    request at a time and one torch thread), the decision's (score, search) with them, their sum, the server's
    CPU per request, and the rest: HTTP, multipart, the key, the lockout, the database, the audit, the metrics,
    the thread hops."""
    def mean_ms(stage: str) -> float:  # the clients' warm-up requests are in the metrics too: a mean, not a sum
        (seconds, count), (seconds_before, count_before) = after.get(stage, (0, 0)), before.get(stage, (0, 0))
        return (seconds - seconds_before) * 1e3 / (count - count_before) if count > count_before else 0.0

    stages = {stage: mean_ms(stage) for stage in (*PIPELINE_STAGES, *DECISION_STAGES)}
    pipeline = sum(stages.values())
    cpu = cell.server_cpu * 1e3 / len(cell.latencies)
    shown = "  ".join(f"{stage} {ms:.2f}" for stage, ms in stages.items() if ms > 0)
    return (f"{'':15}profile, ms per request: {shown}; pipeline and decision {pipeline:.2f} of server CPU "
            f"{cpu:.2f}: {cpu - pipeline:.2f} outside them")


def fallback_report(metrics: str) -> str:
    """The CNN fallback detector's outcomes and time over the whole run, from the server's metrics."""
    outcomes = {outcome: int(n) for outcome, n in
                samples(metrics, "facegate_detect_fallbacks_total", "outcome").items()}
    seconds, count = stage_totals(metrics).get("detect_fallback", (0.0, 0))
    mean = f", {seconds / count * 1e3:.0f} ms each on average" if count else ""
    return f"CNN fallbacks over the run: {outcomes or 'none'}{mean}"


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
    parser.add_argument("--client-processes", type=int, default=1,
                        help="processes the clients are spread over (one sends at most about 1,000 uploads/s)")
    parser.add_argument("--no-reference", action="store_true", help="skip the dlib pipeline (on a GPU machine)")
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes (WEB_CONCURRENCY of scripts/serve.sh); the GIL is per process")
    parser.add_argument("--photos", type=Path, default=TESTFACES, help="one folder of photos per person")
    args = parser.parse_args()

    people = sorted(p for p in args.photos.iterdir() if p.is_dir())
    photos = {p.name: sorted(p.glob("*.jpg")) for p in people}
    probes = [(name, path.read_bytes()) for name, paths in photos.items() for path in paths[1:]]
    embedder = Embedder.load(DEFAULT_MODEL, "cpu")  # only for its id and dimension
    env = {k: v for k, v in os.environ.items() if k.startswith("FACEGATE_")}
    print(f"machine: {machine()}")
    print(f"settings: gallery {GALLERY} employees on SQLite, {len(probes)} probe photos (250x250), "
          f"{args.requests} requests per cell, {args.workers} server process(es), server env {env or 'defaults'}")

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        seed_gallery(url, model_id=embedder.model_id, dim=embedder.dim, n=GALLERY - len(people))
        keys = make_keys(url)
        # Genuine probes fail now and then; the brute-force lockout would turn those claims into 429s.
        server_env = {"FACEGATE_VERIFY_MAX_FAILURES": "0", "FACEGATE_VERIFY_MAX_FAILURES_PER_KEY": "0"}
        if args.workers > 1:
            (Path(tmp) / "metrics").mkdir()
            server_env["PROMETHEUS_MULTIPROC_DIR"] = str(Path(tmp) / "metrics")
        server = start_server(url, args.port, server_env, args.workers)
        base = f"http://127.0.0.1:{args.port}"
        admin = httpx.Client(base_url=base, timeout=60, headers={"X-API-Key": keys["admin"]})
        try:
            for name, paths in photos.items():
                response = admin.post("/enroll", data={"employee_id": name},
                                       files={"image": ("ref.jpg", paths[0].read_bytes(), "image/jpeg")})
                if response.status_code == 422:  # a reference the enrollment gate refuses: not in the run
                    print(f"left out {name}: {response.json()['error']['code']}")
                    probes = [probe for probe in probes if probe[0] != name]
                    continue
                response.raise_for_status()
            ready = admin.get("/readyz").json()
            print(f"server ready: {ready}")
            rng = np.random.default_rng(0)
            results = {}
            for endpoint in ("verify", "identify"):
                for concurrency in args.concurrency:
                    chosen = rng.integers(0, len(probes), args.requests)
                    requests = [(f"/{endpoint}", {"employee_id": probes[i][0]} if endpoint == "verify" else {},
                                 probes[i][1]) for i in chosen]
                    before = stage_totals(admin.get("/metrics").text)
                    cell = load(base, requests, concurrency, keys["verify"], server.pid, args.client_processes)
                    results[endpoint, concurrency] = cell
                    print(f"/{endpoint:<8} c={concurrency:<3} {cell.report()}", flush=True)
                    if concurrency == 1:
                        print(profile(before, stage_totals(admin.get("/metrics").text), cell), flush=True)
                    if cell.errors:
                        raise SystemExit(f"{cell.errors} requests failed")
            print(fallback_report(admin.get("/metrics").text))
        finally:
            admin.close()
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
        verify_p50 = float(np.median(results["verify", 1].latencies))
        print(f"/verify p50 at c=1 is {verify_p50 / dlib_p50:.2f} of dlib's per-photo time (target <= 0.25)")
        print(f"/verify req/s at c=4 is {results['verify', 4].rate / dlib_rate:.2f}x dlib in 2 processes "
              f"(target >= 4)")


if __name__ == "__main__":
    main()
