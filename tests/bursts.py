"""Bursts of frames for the liveness tests: real head turns, and attacks made in memory.

The real turns are frames of ../shared/data/liveness/webcam-head-turns.gif (one man at a webcam; Apache-2.0,
shamangary/FSA-Net: see that folder's README). A burst answering any challenge is cut from its stretches: the
man facing the camera, turned to his left, turned to his right. Nothing here is written into the repository.
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageSequence

from model.evaluation.attacks import CardPose, card_frame
from tests.photos import encode

# Frame numbers, in the gif's order: its poses change every 8 frames or so (about 2 a second).
STEADY = (9, 10)  # facing the camera
TURNED = {"left": (16, 17, 18), "right": (44, 48, 53)}  # his own left and right
BACK = {"left": (24, 26), "right": (56, 64, 66)}  # on his way back, then facing the camera again


@cache
def gif_frames(shared_data: Path) -> tuple[bytes, ...]:
    gif = shared_data / "liveness" / "webcam-head-turns.gif"
    if not gif.is_file():
        pytest.skip(f"the liveness samples are not at {gif.parent}")
    # lossless, as the benchmark reads them: a JPEG's artefacts move a 90-px face's landmarks by degrees
    return tuple(encode(frame.convert("RGB"), "PNG") for frame in ImageSequence.Iterator(Image.open(gif)))


def frontal_frame(shared_data: Path, number: int = 12) -> bytes:
    """A frame of the man facing the camera: his reference photo (CAPPED: the same, wearing his cap)."""
    return gif_frames(shared_data)[number]


CAPPED = 66


def head_turns(shared_data: Path, prompts: list[str]) -> list[bytes]:
    """Real frames that answer `prompts`: facing the camera, then each turn and back."""
    frames = gif_frames(shared_data)
    numbers = [*STEADY, *(n for prompt in prompts for n in (*TURNED[prompt], *BACK[prompt]))]
    return [frames[n] for n in numbers]


def card_turns(photo: bytes, prompts: list[str], degrees: float = 30.0, bend: float = 0.0) -> list[bytes]:
    """A printed photo held as a card and turned the way each prompt asks (turning a card to its right moves
    the nose as a head turning to its left does), back to facing the camera after each; `bend`: folded down its
    middle by that many degrees a side, the fold towards the camera as a nose is."""
    rgb = np.asarray(Image.open(io.BytesIO(photo)).convert("RGB"))
    path = [0.0, 0.0]
    for prompt in prompts:
        sign = -1.0 if prompt == "left" else 1.0
        path += [sign * degrees * f for f in (0.5, 1.0, 1.0)] + [0.0, 0.0]
    return [encode(Image.fromarray(card_frame(rgb, CardPose(yaw=yaw, bend=bend, distance=1.0)))) for yaw in path]


def write_y4m(frames: list[np.ndarray], path: Path, fps: int) -> None:
    """RGB frames (even width and height) as a Y4M film (4:2:0), the format of Chromium's fake camera."""
    height, width = frames[0].shape[:2]
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
            y = 0.299 * r + 0.587 * g + 0.114 * b
            u = (b - y) * 0.564 + 128
            v = (r - y) * 0.713 + 128
            out.write(b"FRAME\n")
            out.write(np.clip(y, 0, 255).astype(np.uint8).tobytes())
            for plane in (u, v):  # each 2x2 block's mean
                quarter = plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))
                out.write(np.clip(quarter, 0, 255).astype(np.uint8).tobytes())


def door_film(shared_data: Path, path: Path, fps: int = 10) -> None:
    """The man answering the door screen's prompts left, right, left at its pace (console door.js: 0.75 s
    facing the camera, then for each prompt 1.5 s to turn and 0.75 s to come back), reacting 0.3 s late, then
    facing the camera; the film loops after 10 s. It answers the challenge left, right, left (not left, right:
    see tests/browser/test_console.py's FILMED).

    All of it is from the part of the gif where he wears a cap (frames 40-71; enroll him from CAPPED):
    facing the camera is frames 64-71, his turn to the right 40-55 and back 56-71, and his turn to the left the
    right turn mirrored. (The gif's own left turn reads as little as 10 degrees once the film has been through
    Chromium's camera and a JPEG, under the 11 the service asks for.)"""
    gif = [np.asarray(frame.convert("RGB")) for frame in
           ImageSequence.Iterator(Image.open(shared_data / "liveness" / "webcam-head-turns.gif"))]
    decoded = gif + [frame[:, ::-1] for frame in gif]  # frame n mirrored is len(gif) + n
    mirrored = len(gif)
    # each phase: frames, in order, stretched over its time
    steady = [*range(64, 72)]
    turns = {"right": [*range(40, 56)], "left": [mirrored + n for n in range(40, 56)]}
    back = {"right": [*range(56, 72)], "left": steady}
    phases = [(steady, 0.75)] + [phase for prompt in ("left", "right", "left")
                                 for phase in ((turns[prompt], 1.5), (back[prompt], 0.75))] + [(steady, 10.0)]
    film = []
    for k in range(10 * fps):
        elapsed, (shown, seconds) = max(0.0, k / fps - 0.3), phases[0]
        for shown, seconds in phases:  # noqa: B007 - the phase the loop stops at is the one shown
            if elapsed < seconds:
                break
            elapsed -= seconds
        film.append(decoded[shown[min(len(shown) - 1, int(elapsed / seconds * len(shown)))]])
    write_y4m(film, path, fps)
