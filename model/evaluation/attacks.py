"""Synthetic presentation attacks: a photo printed as a card and held in front of a camera.

`card_frame` renders what a camera sees of a card showing `photo`, turned, tilted, rolled, moved and bent
(folded along a vertical line), by exact perspective: each half of the card is a plane, so its image is a
homography of the photo. The liveness benchmark and tests make attacks from it; nothing here is served.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

FRAME = (320, 240)  # a door's frame (width, height), as the console's door page sends them


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The rotation turning by `yaw` about the vertical axis, then `pitch` and `roll` (degrees)."""
    y, p, r = (math.radians(a) for a in (yaw, pitch, roll))
    about_y = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    about_x = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    about_z = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return about_z @ about_x @ about_y


@dataclass(frozen=True)
class CardPose:
    """How the card is held. Angles in degrees; `distance` and `shift` in card widths; `bend` is each half's
    angle about the fold (positive: the fold comes towards the camera, as a nose would); `fold` is where the
    fold runs across the photo, as a fraction of its width."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    bend: float = 0.0
    fold: float = 0.5
    distance: float = 1.2
    shift: tuple[float, float] = (0.0, 0.0)


def card_frame(photo: np.ndarray, pose: CardPose, frame: tuple[int, int] = FRAME,
               background: np.ndarray | None = None) -> np.ndarray:
    """What a camera with a 53-degree horizontal field of view sees of `photo` (RGB, H x W x 3) held as a card."""
    height, width = photo.shape[:2]
    out_w, out_h = frame
    camera = np.array([[out_w, 0, out_w / 2], [0, out_w, out_h / 2], [0, 0, 1]], dtype=np.float64)
    unit = 1.0 / width  # the card is one unit wide
    fold = pose.fold * width
    turned = rotation(pose.yaw, pose.pitch, pose.roll)
    placed = np.array([pose.shift[0], pose.shift[1], pose.distance])
    source = Image.fromarray(photo)
    canvas = Image.new("RGB", frame, (96, 96, 96)) if background is None else Image.fromarray(background)
    halves = ((slice(0, round(fold)), pose.bend), (slice(round(fold), width), -pose.bend))
    for columns, bend in halves:
        # (u, v, 1) in the photo -> a point of the card in 3-D: the half turned about the fold, then the card
        to_card = np.array([[unit, 0, -fold * unit], [0, unit, -height / 2 * unit], [0, 0, 0]])
        local = rotation(bend, 0, 0) @ to_card
        local[0, 2] += (fold - width / 2) * unit
        world = turned @ local
        world[:, 2] += placed
        homography = camera @ world
        inverse = np.linalg.inv(homography)
        coefficients = tuple((inverse / inverse[2, 2]).flatten()[:8])
        mask = np.zeros((height, width), dtype=np.uint8)
        mask[:, columns] = 255
        canvas.paste(source.transform(frame, Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BILINEAR),
                     (0, 0), Image.fromarray(mask).transform(frame, Image.Transform.PERSPECTIVE, coefficients,
                                                             Image.Resampling.BILINEAR))
    return np.asarray(canvas)
