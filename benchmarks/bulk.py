"""Bulk enrollment of 2,000 photos beside sequential /enroll calls, on SQLite, in one run.

    python -m benchmarks.bulk [--photos 2000] [--http-sample 200]

The photos are the first photo of each of 2,000 LFW people, unpacked from ../shared/data into a temporary
folder (one sub-folder per employee, the layout app.cli.bulk_enroll reads) and deleted afterwards. The
sequential figure is one client calling /enroll on a real uvicorn server for a sample of the same photos.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tarfile
import tempfile
import time
from pathlib import Path

import httpx

from app.cli.bulk_enroll import bulk_enroll, jobs_from_folders
from app.core.config import Settings
from app.gallery import db
from benchmarks.common import DATA, machine
from benchmarks.http import make_keys, start_server

LFW = DATA / "lfw-deepfunneled.tar"


def unpack_people(target: Path, count: int) -> list[Path]:
    """The first photo of `count` people, as target/<person>/<photo>."""
    chosen: dict[str, tarfile.TarInfo] = {}
    with tarfile.open(LFW) as archive:
        for member in sorted((m for m in archive.getmembers() if m.isfile() and m.name.endswith(".jpg")),
                             key=lambda m: m.name):
            person = member.name.split("/")[-2]
            if person not in chosen:
                chosen[person] = member
            if len(chosen) == count:
                break
        paths = []
        for person, member in chosen.items():
            (target / person).mkdir(parents=True)
            path = target / person / Path(member.name).name
            path.write_bytes(archive.extractfile(member).read())
            paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--http-sample", type=int, default=200)
    parser.add_argument("--processes", type=int, default=multiprocessing.cpu_count())
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "people"
        paths = unpack_people(folder, args.photos)
        print(f"machine: {machine()}")
        print(f"settings: {len(paths)} LFW photos (250x250), {args.processes} processes, SQLite; sequential /enroll "
              f"on a sample of {args.http_sample}")

        settings = Settings(database_url=f"sqlite:///{tmp}/bulk.db")
        summary = bulk_enroll(list(jobs_from_folders(folder)), settings, processes=args.processes)
        bulk_rate = summary.enrolled / summary.seconds
        print(f"bulk: {summary.enrolled} enrolled, {len(summary.failures)} failed "
              f"({', '.join(sorted({f.code for f in summary.failures})) or 'none'}) in {summary.seconds:.1f} s: "
              f"{bulk_rate:.1f} photos/s ({len(paths) / summary.seconds:.1f} photos/s counting the failures)")

        http_url = f"sqlite:///{tmp}/http.db"
        db.migrate(http_url)
        admin = make_keys(http_url)["admin"]
        server = start_server(http_url, args.port, {})
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=60,
                              headers={"X-API-Key": admin}) as client:
                sample = paths[:args.http_sample]
                ok, started = 0, time.perf_counter()
                for path in sample:
                    response = client.post("/enroll", data={"employee_id": path.parent.name},
                                           files={"image": (path.name, path.read_bytes(), "image/jpeg")})
                    ok += response.status_code == 201
                seconds = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait()
        http_rate = ok / seconds
        print(f"sequential /enroll: {ok} of {len(sample)} enrolled in {seconds:.1f} s: {http_rate:.1f} photos/s")
        print(f"bulk / sequential: {bulk_rate / http_rate:.2f}x (target >= 2)")


if __name__ == "__main__":
    main()
