"""Photo bytes -> the chosen face and its chip: the one way in for the service, bulk enrollment, evaluation
and training alike.
"""

from __future__ import annotations

import numpy as np

from model.faces.config import FacePolicy, Views
from model.faces.decode import decode_image
from model.faces.errors import FaceTooSmall, MultipleFaces, NoFaceDetected
from model.faces.pipeline import FaceBox, FacePipeline, StageTimer, untimed
from model.faces.quality import Quality, assess


def choose_face(faces: list[FaceBox], policy: FacePolicy, shape: tuple[int, ...]) -> FaceBox:
    """The policy's face among `faces` (sorted largest first) of a photo of `shape` (height, width, ...)."""
    if not faces:
        raise NoFaceDetected("no face was found in the photo")
    if policy.multi_face == "centre":
        height, width = shape[:2]
        face = min(faces, key=lambda f: f.distance_to(width / 2, height / 2))
    elif len(faces) > 1 and (policy.multi_face == "reject"
                             or faces[0].area < policy.dominant_ratio * faces[1].area):
        raise MultipleFaces(
            f"{len(faces)} faces were found; send a photo of one person"
            + ("" if policy.multi_face == "reject" else
               f" (or one whose face is at least {policy.dominant_ratio:g}x larger than the others)")
        )
    else:
        face = faces[0]
    if min(face.width, face.height) < policy.min_face_size:
        raise FaceTooSmall(f"the face is {face.width}x{face.height} pixels; at least {policy.min_face_size} "
                           "are needed")
    return face


def find_face(data: bytes, pipeline: FacePipeline, policy: FacePolicy,
              timer: StageTimer = untimed) -> tuple[np.ndarray, FaceBox]:
    """Decode and detect, and choose the face under `policy`: (the photo as RGB, its face)."""
    with timer("decode"):
        rgb = decode_image(data, max_pixels=policy.max_pixels, max_bytes=policy.max_decode_bytes)
    with timer("detect"):
        return rgb, choose_face(pipeline.detect(rgb, timer, policy), policy, rgb.shape)


def prepare(data: bytes, pipeline: FacePipeline, policy: FacePolicy, views: Views | None = None,
            timer: StageTimer = untimed) -> tuple[FaceBox, np.ndarray]:
    """Decode, detect, choose a face under `policy`, and align it: (face, chip or chips of `views`).

    Raises a FaceError (model.faces.errors) for a photo that cannot be used, and nothing else for bad bytes.
    """
    rgb, face = find_face(data, pipeline, policy, timer)
    with timer("align"):
        return face, pipeline.align(rgb, face, views)


def prepare_assessed(data: bytes, pipeline: FacePipeline, policy: FacePolicy, views: Views | None = None,
                     timer: StageTimer = untimed) -> tuple[FaceBox, np.ndarray, Quality]:
    """prepare(), and the face's quality (model.faces.quality): the service reports it, and gates enrollment."""
    rgb, face = find_face(data, pipeline, policy, timer)
    with timer("align"):
        chips = pipeline.align(rgb, face, views)
    with timer("quality"):
        return face, chips, assess(rgb, face)
