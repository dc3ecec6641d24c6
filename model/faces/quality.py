"""How fit a face is to be an employee's reference: its size, sharpness, pose and exposure.

Measured on the photo's face itself, on a fixed canonical crop (the face warped by its landmarks to 128 px,
grey), so that the figures mean the same whatever model serves:
- face size: the smaller side of the detected box, in the photo's pixels;
- sharpness: the variance of the Laplacian of the crop (a blurred or upscaled face has little fine detail);
- roll: the tilt of the line between the eyes, in degrees;
- yaw: how far the head is turned, in degrees, estimated from where the base of the nose sits between the
  eyes (0 frontal; the nose base is taken half an eye-distance in front of the eyes, which matches the turn
  seen on LFW photos to within a few degrees);
- brightness and contrast: the mean and standard deviation of the crop's grey levels (0-255).
"""

from __future__ import annotations

import math

import numpy as np

from model.faces.config import Quality
from model.faces.pipeline import FaceBox, key_points, warp_to_template

CROP = 128
NOSE_DEPTH = 0.5  # the nose base's depth in front of the eyes, in eye-distances


def laplacian_variance(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian over the interior of a 2-D array."""
    g = grey.astype(np.float32)
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def pose(landmarks: tuple[tuple[float, float], ...]) -> tuple[float, float]:
    """(yaw, roll) in degrees from dlib's five points."""
    left, right, nose = key_points(np.asarray(landmarks, dtype=np.float64))
    eyes = right - left
    distance = float(np.hypot(*eyes)) or 1.0
    roll = math.degrees(math.atan2(eyes[1], eyes[0]))
    # where the nose base projects on the eye line: 0.5 is half-way, frontal
    along = float(np.dot(nose - left, eyes)) / distance**2
    yaw = math.degrees(math.atan((along - 0.5) / NOSE_DEPTH))
    return yaw, roll


def assess(rgb: np.ndarray, face: FaceBox) -> Quality:
    """The quality of `face` in the decoded photo `rgb`."""
    crop = warp_to_template(rgb, key_points(np.asarray(face.landmarks, dtype=np.float64)), CROP)
    grey = crop.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    yaw, roll = pose(face.landmarks)
    return Quality(face_size=min(face.width, face.height), sharpness=laplacian_variance(grey), yaw=yaw, roll=roll,
                   brightness=float(grey.mean()), contrast=float(grey.std()))
