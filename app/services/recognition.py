"""Enroll, verify and identify: the decisions live here (face policy, thresholds, open-set rejection).

Order of work in every write: the photo is fully processed before the database is touched, the database
commits before the index changes. A bad photo or a failed commit therefore leaves both as they were.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import EmployeeExists, EmployeeNotFound, PayloadTooLarge, StaleTemplate
from app.faces import FaceBox, FacePipeline, FaceTooSmall, MultipleFaces, NoFaceDetected, decode_image
from app.faces.batcher import MicroBatcher
from app.faces.embedder import Embedder
from app.gallery import repository
from app.gallery.feed import fill_index
from app.gallery.index import EmbeddingIndex, Match
from app.gallery.models import Employee

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Probe:
    """A photo turned into an embedding."""

    face: FaceBox
    vector: np.ndarray


@dataclass(frozen=True)
class Enrollment:
    employee: Employee
    face: FaceBox
    model_id: str
    enrolled_at: datetime
    replaced: bool  # an existing reference was replaced


@dataclass(frozen=True)
class Verification:
    employee_id: str
    match: bool
    distance: float
    threshold: float
    model_id: str
    face: FaceBox


@dataclass(frozen=True)
class Identification:
    match: Match | None
    candidates: list[Match]
    threshold: float
    model_id: str
    face: FaceBox


def choose_face(faces: list[FaceBox], settings: Settings) -> FaceBox:
    """The multi-face policy. `faces` is sorted largest first."""
    if not faces:
        raise NoFaceDetected("no face was found in the photo")
    if len(faces) > 1:
        dominant = faces[0].area >= settings.dominant_face_ratio * faces[1].area
        if settings.multi_face_policy == "reject" or not dominant:
            raise MultipleFaces(
                f"{len(faces)} faces were found; send a photo of one person"
                + ("" if settings.multi_face_policy == "reject" else
                   f" (or one whose face is at least {settings.dominant_face_ratio:g}x larger than the others)")
            )
    face = faces[0]
    if min(face.width, face.height) < settings.min_face_size:
        raise FaceTooSmall(
            f"the face is {face.width}x{face.height} pixels; at least {settings.min_face_size} are needed"
        )
    return face


def face_crop(data: bytes, *, settings: Settings, pipeline: FacePipeline) -> tuple[FaceBox, np.ndarray]:
    """Photo bytes -> the chosen face and its aligned crop, under the service's limits and face policy."""
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLarge(f"the photo is {len(data)} bytes; the limit is {settings.max_upload_bytes}")
    rgb = decode_image(data, max_pixels=settings.max_image_pixels)
    face = choose_face(pipeline.detect(rgb), settings)
    return face, pipeline.align(rgb, face)


class RecognitionService:
    def __init__(self, *, settings: Settings, pipeline: FacePipeline, embedder: Embedder,
                 index: EmbeddingIndex, batcher: MicroBatcher | None = None) -> None:
        self.settings, self.pipeline, self.embedder, self.index = settings, pipeline, embedder, index
        self.batcher = batcher

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    @property
    def threshold(self) -> float:
        return self.settings.threshold if self.settings.threshold is not None else self.embedder.card.threshold

    def probe(self, data: bytes) -> Probe:
        face, crop = face_crop(data, settings=self.settings, pipeline=self.pipeline)
        vector = self.batcher.embed(crop) if self.batcher else self.embedder.embed(crop)[0]
        return Probe(face, vector)

    def enroll(self, *, session: Session, employee_id: str, name: str | None, data: bytes,
               replace: bool) -> Enrollment:
        probe = self.probe(data)
        employee = repository.get_employee(session=session, employee_id=employee_id)
        existed = employee is not None
        if existed and not replace:
            raise EmployeeExists(f"employee {employee_id!r} is already enrolled; use replace=true to replace")
        try:
            if employee is None:
                employee = repository.add_employee(session=session, employee_id=employee_id, name=name)
            elif name is not None:
                employee.name = name
            template = repository.set_template(session=session, employee=employee, vector=probe.vector,
                                               model_id=self.model_id)
            session.commit()
        except IntegrityError as exc:  # a concurrent enroll of the same id won the race
            session.rollback()
            raise EmployeeExists(f"employee {employee_id!r} is already enrolled") from exc
        self.index.upsert(employee.employee_id, employee.name, probe.vector)
        log.info("enrolled %s (replace=%s)", employee_id, replace)
        return Enrollment(employee, probe.face, self.model_id, template.created_at, replaced=existed)

    def verify(self, *, session: Session, employee_id: str, data: bytes,
               threshold: float | None) -> Verification:
        reference = self.index.vector(employee_id)
        if reference is None:
            self._raise_missing(session, employee_id)
        probe = self.probe(data)
        distance = float(np.linalg.norm(probe.vector - reference))
        threshold = self.threshold if threshold is None else threshold
        return Verification(employee_id, distance <= threshold, distance, threshold, self.model_id, probe.face)

    def identify(self, *, data: bytes, top_k: int) -> Identification:
        probe = self.probe(data)
        candidates = self.index.search(probe.vector, top_k)
        best = candidates[0] if candidates and candidates[0].distance <= self.threshold else None
        return Identification(best, candidates, self.threshold, self.model_id, probe.face)

    def delete(self, *, session: Session, employee_id: str) -> None:
        employee = repository.get_employee(session=session, employee_id=employee_id)
        if employee is None:
            raise EmployeeNotFound(f"no employee {employee_id!r}")
        repository.delete_employee(session=session, employee=employee)
        session.commit()
        self.index.remove(employee_id)
        log.info("deleted %s", employee_id)

    def _raise_missing(self, session: Session, employee_id: str) -> None:
        if repository.get_employee(session=session, employee_id=employee_id) is None:
            raise EmployeeNotFound(f"no employee {employee_id!r}")
        raise StaleTemplate(f"employee {employee_id!r} was enrolled with another model; enroll again")


def load_index(*, session: Session, embedder: Embedder) -> EmbeddingIndex:
    """The index of every template made by the embedder's model, built in one piece."""
    index = EmbeddingIndex(embedder.dim, embedder.device)
    fill_index(index, session=session, model_id=embedder.model_id)
    return index
