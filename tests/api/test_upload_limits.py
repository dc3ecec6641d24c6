"""Uploads as an attacker sends them: the key is checked before a byte of the body is read, a streamed body is
cut off at the limit, and one photo's decode stays within its memory budget."""

from __future__ import annotations

import io
import select
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from tests.client import enroll, error_code
from tests.live import live_server

MiB = 2**20


def stream_chunked(host: str, port: int, path: str, headers: dict[str, str], budget: int) -> tuple[int, bytes]:
    """Send a chunked body of up to `budget` bytes until the server answers or hangs up; (bytes sent, answer)."""
    head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": host, "Transfer-Encoding": "chunked",
                                                  "Content-Type": "multipart/form-data; boundary=x", **headers}.items())
    piece = b"\0" * MiB
    chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
    part = b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    sent, answer = 0, b""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + b"%x\r\n" % len(part) + part + b"\r\n")
        while sent < budget:
            readable, writable, _ = select.select([sock], [sock], [], 10)
            if readable:
                break
            try:
                sent += sock.send(chunk[sent % len(chunk):] if sent % len(chunk) else chunk)
            except OSError:  # the server hung up
                break
        try:
            while len(answer) < 4096 and (data := sock.recv(4096)):
                answer += data
        except OSError:
            pass
    return sent, answer


@pytest.fixture
def server(sqlite_url):
    with live_server(sqlite_url) as running:
        yield running


def test_an_unauthenticated_chunked_upload_is_refused_before_its_body_is_read(server):
    """A 1 GiB upload with no key was once spooled to disk (982 MiB) before the 401."""
    sent, answer = stream_chunked(server.host, server.port, "/enroll", {}, budget=300 * MiB)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert sent < 20 * MiB, f"{sent / MiB:.0f} MiB went out before the refusal"


def test_a_chunked_upload_with_a_key_is_cut_off_at_the_limit(server):
    sent, answer = stream_chunked(server.host, server.port, "/enroll", {"X-API-Key": server.keys["admin"]},
                                  budget=300 * MiB)
    assert answer.startswith(b"HTTP/1.1 413") and b"image_too_large" in answer, answer[:300]
    assert sent < 10 * MiB + 20 * MiB, f"{sent / MiB:.0f} MiB went out before the refusal"


def sixteen_bit_png(side: int = 6320) -> bytes:
    pixels = np.zeros((side, side), np.uint16)
    pixels[side // 3: side // 2, side // 3: side // 2] = 60000
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


MEASURE_DECODE = """
import resource, sys
from app.core.config import Settings
from model.faces.errors import FaceError
from model.faces.pipeline import FacePipeline
from model.faces.prepare import prepare
data = open(sys.argv[1], "rb").read()
settings = Settings()
pipeline = FacePipeline()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    prepare(data, pipeline, settings.photos.face_policy)
    code = "ok"
except FaceError as exc:
    code = exc.code
print(code, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def test_a_small_16_bit_png_of_40_megapixels_costs_little_memory_and_is_refused(client, tmp_path):
    """A 76 KiB 16-bit PNG of 6320x6320 once cost +724 MiB and 5 s."""
    data = sixteen_bit_png()
    assert len(data) < 200 * 1024
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    out = subprocess.run([sys.executable, "-c", MEASURE_DECODE, str(path)], capture_output=True, text=True,
                         check=True).stdout.split()
    code, grown_mib = out[0], float(out[1])
    assert code == "image_too_large" and grown_mib < 300, out
    response = enroll(client, "e-1", data)
    assert (response.status_code, error_code(response)) == (413, "image_too_large")


def test_a_big_jpeg_is_decoded_at_a_reduced_scale_within_the_budget():
    from model.faces.decode import decode_cost, decode_image

    image = Image.new("RGB", (7000, 5000), (120, 90, 60))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=50)
    budget = 64 * MiB
    assert decode_cost("RGB", 7000, 5000) > budget
    rgb = decode_image(buffer.getvalue(), max_pixels=40_000_000, max_bytes=budget)
    assert rgb.shape[1] < 7000 and decode_cost("RGB", rgb.shape[1], rgb.shape[0]) <= budget
    assert rgb.shape[1] * 5000 == pytest.approx(rgb.shape[0] * 7000, rel=0.01), "the aspect ratio is kept"


def exchange(server, request: bytes, then_send: int = 0) -> tuple[bytes, float | None]:  # noqa: ANN001
    """Send `request`, then up to `then_send` bytes of body while reading; (the answer, seconds from the answer's
    first byte until the server closed the connection, or None if it stayed open for 5 s)."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(request)
        answer, closed_after, answered_at, sent = b"", None, None, 0
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock] if sent < then_send else [], [], 0.5)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    closed_after = time.monotonic() - (answered_at or time.monotonic())
                    break
                answer += data
                answered_at = answered_at or time.monotonic()
                if time.monotonic() - answered_at > 5:
                    break
            elif writable:
                try:
                    sent += sock.send(b"\0" * 65536)
                except OSError:
                    continue
            elif answered_at and time.monotonic() - answered_at > 5:
                break
    return answer, closed_after


def test_a_head_over_16_kib_is_refused_even_in_one_write(server):
    for size in (20_000, 60_000):
        request = (f"GET /employees HTTP/1.1\r\nHost: x\r\nX-API-Key: {server.keys['admin']}\r\n"
                   f"X-Padding: {'a' * size}\r\n\r\n").encode()
        answer, closed_after = exchange(server, request)
        assert answer.startswith(b"HTTP/1.1 431") and b"headers_too_large" in answer, answer[:300]
        assert closed_after is not None and closed_after < 1.0
    ok = exchange(server, f"GET /employees HTTP/1.1\r\nHost: x\r\nX-API-Key: {server.keys['admin']}\r\n"
                          f"X-Padding: {'a' * 8000}\r\n\r\n".encode())[0]
    assert ok.startswith(b"HTTP/1.1 200"), ok[:200]


def test_a_refused_upload_is_cut_off_not_read_to_its_end(server):
    """A client announces 1 GiB and keeps sending: after the 401 the server closes within a second instead of
    reading and discarding the gigabyte to keep the connection."""
    head = (f"POST /enroll HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {2**30}\r\n\r\n").encode()
    answer, closed_after = exchange(server, head, then_send=2**30)
    assert answer.startswith(b"HTTP/1.1 401") and b"connection: close" in answer.lower(), answer[:300]
    assert closed_after is not None and closed_after < 1.0, closed_after
