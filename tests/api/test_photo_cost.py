"""Large photos cost bounded memory: eight JPEGs of 36 megapixels (under every limit) sent at once to a live
server grow its peak resident memory by less than 1 GB, and it comes back down."""

from __future__ import annotations

import io
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

from tests.live import live_server

MB = 2**20
log = logging.getLogger(__name__)


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak) of a process, in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


def large_jpeg(photo: Path, side: int = 6000) -> bytes:
    """A test face blown up to side x side pixels, as a camera's full-resolution JPEG would be."""
    buffer = io.BytesIO()
    Image.open(photo).convert("RGB").resize((side, side), Image.BILINEAR).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def test_eight_large_jpegs_at_once_cost_under_a_gigabyte_and_it_is_given_back(photos, sqlite_url, tmp_path):
    big = large_jpeg(photos.path("Tony_Blair", 2))
    assert len(big) < 10 * MB, "under the upload limit"
    with live_server(sqlite_url, log=tmp_path / "server.log") as server, \
            httpx.Client(base_url=server.url, timeout=120) as client:
        admin, door = {"X-API-Key": server.keys["admin"]}, {"X-API-Key": server.keys["verify"]}
        assert client.post("/enroll", data={"employee_id": "tb"}, headers=admin,
                           files={"image": ("a.jpg", photos.bytes("Tony_Blair", 1))}).status_code == 201
        client.post("/verify", data={"employee_id": "tb"}, headers=door, files={"image": ("a.jpg", big)})  # warm
        pid = server.process.pid
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak starts again from here
        before = memory(pid)

        def verify(_: int) -> int:
            return client.post("/verify", data={"employee_id": "tb"}, headers=door,
                               files={"image": ("a.jpg", big)}).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(verify, range(8)))
        peak = memory(pid)["VmHWM"] - before["VmRSS"]
        time.sleep(2)
        after = memory(pid)["VmRSS"] - before["VmRSS"]
    log.info("8 JPEGs of %d bytes at once: peak resident memory +%.0f MB, +%.0f MB 2 s after", len(big), peak / MB,
             after / MB)  # --log-cli-level=INFO shows it
    assert set(statuses) == {200}, statuses
    assert peak < 1024 * MB, f"peak resident growth {peak / MB:.0f} MB"
    assert after < max(64 * MB, peak / 2), f"still {after / MB:.0f} MB above the start, of a {peak / MB:.0f} MB peak"
