"""Enroll, verify and identify: the decisions live here (face policy, thresholds, open-set rejection).

Order of work in every write: the photo is fully processed before the database is touched, the database
commits before the index changes. A bad photo or a failed commit therefore leaves both as they were.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from app.core.config import Settings
from app.core.errors import EmployeeExists, EmployeeNotFound, StaleTemplate, ThresholdTooLoose
from app.gallery import repository
from app.gallery.index import EmbeddingIndex, Match
from app.gallery.models import Employee, Template
from app.services.attempts import FailedAttempts
from app.services.batcher import MicroBatcher
from model.faces.config import Views
from model.faces.embedder import Embedder
from model.faces.errors import ImageTooLarge
from model.faces.pipeline import FaceBox, FacePipeline
from model.faces.prepare import prepare

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


def interpolated_threshold(levels: dict[float, float], far: float) -> float:
    """The distance threshold that gives a false accept rate of `far` per comparison.

    `levels` are measured {FAR: threshold} points of the impostor distances (the model card's). Between two
    of them the threshold is interpolated in log FAR; below the lowest it is extrapolated along the last two,
    which is stricter than the true tail (a Gaussian-like tail falls faster than that line), never looser.
    """
    points = sorted((math.log10(f), t) for f, t in levels.items())
    if len(points) < 2:
        raise ValueError("at least two FAR levels are needed")
    x = math.log10(far)
    # the segment around x, or the end segment nearest to it
    i = next((i for i in range(len(points) - 1) if x <= points[i + 1][0]), len(points) - 2)
    (x0, t0), (x1, t1) = points[i], points[i + 1]
    return max(0.0, t0 + (t1 - t0) * (x - x0) / (x1 - x0))


def identify_threshold(levels: dict[float, float], *, fpir: float, gallery_size: int, ceiling: float) -> float:
    """The open-set (1:N) threshold for a false-positive identification rate `fpir` on strangers.

    A stranger is compared with all N templates, and is named when any one of them is close enough: with a
    per-comparison FAR f, FPIR = 1 - (1 - f)^N, about N f. So f = fpir / N, and the threshold tightens as the
    gallery grows. It is never looser than the 1:1 threshold (`ceiling`).
    """
    per_comparison = 1 - (1 - fpir) ** (1 / max(gallery_size, 1))
    return min(ceiling, interpolated_threshold(levels, per_comparison))


def face_chips(data: bytes, *, settings: Settings, pipeline: FacePipeline,
               views: Views | None) -> tuple[FaceBox, np.ndarray]:
    """Photo bytes -> the chosen face and its chip (or `views`), under the service's limits and face policy."""
    if len(data) > settings.max_upload_bytes:
        raise ImageTooLarge(f"the photo is {len(data)} bytes; the limit is {settings.max_upload_bytes}")
    return prepare(data, pipeline, settings.face_policy, views)


def save_enrollment(*, session: Session, employee_id: str, name: str | None, vector: np.ndarray, model_id: str,
                    replace: bool) -> tuple[Employee, Template, bool]:
    """The one write of an enrollment (API enroll and replace, bulk enrollment): the employee, their template
    and the change feed's row, committed together. Returns (employee, template, whether they existed).

    Races: a concurrent enroll of the same id (or of one differing only in case) makes this one 409; a
    replace whose employee is deleted under it looks again, and enrolls them anew.
    """
    for attempt in (1, 2):
        employee = repository.get_employee(session=session, employee_id=employee_id)
        existed = employee is not None
        if existed and not replace:
            raise EmployeeExists(f"employee {employee_id!r} is already enrolled; use replace=true to replace")
        try:
            if employee is None:
                employee = repository.add_employee(session=session, employee_id=employee_id, name=name)
            elif name is not None:
                employee.name = name
            template = repository.set_template(session=session, employee=employee, vector=vector,
                                               model_id=model_id)
            session.commit()
            return employee, template, existed
        except (IntegrityError, StaleDataError) as exc:
            session.rollback()
            if not replace or attempt == 2:
                raise EmployeeExists(f"employee {employee_id!r} (or an id differing only in case) is already "
                                     "enrolled") from exc
    raise AssertionError("unreachable")


class RecognitionService:
    def __init__(self, *, settings: Settings, pipeline: FacePipeline, embedder: Embedder,
                 index: EmbeddingIndex, batcher: MicroBatcher | None = None) -> None:
        self.settings, self.pipeline, self.embedder, self.index = settings, pipeline, embedder, index
        self.batcher = batcher
        self.attempts = FailedAttempts(settings)
        self._far_levels = embedder.card.far_levels_for(embedder.augment)  # the 1:N curve, read once

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    @property
    def threshold(self) -> float:
        """The 1:1 (verify) threshold."""
        if self.settings.threshold is not None:
            return self.settings.threshold
        return self.embedder.card.threshold_for(self.embedder.augment)

    @property
    def identify_threshold(self) -> float:
        """The 1:N threshold for the gallery as it is now (`FACEGATE_IDENTIFY_FPIR`)."""
        return identify_threshold(self._far_levels, fpir=self.settings.identify_fpir, gallery_size=len(self.index),
                                  ceiling=self.threshold)

    def probe(self, data: bytes) -> Probe:
        face, chips = face_chips(data, settings=self.settings, pipeline=self.pipeline,
                                 views=self.embedder.views.to_align)
        vector = self.batcher.embed(chips) if self.batcher else self.embedder.embed(chips[None])[0]
        return Probe(face, vector)

    def enroll(self, *, session: Session, employee_id: str, name: str | None, data: bytes,
               replace: bool) -> Enrollment:
        probe = self.probe(data)
        employee, template, existed = save_enrollment(session=session, employee_id=employee_id, name=name,
                                                      vector=probe.vector, model_id=self.model_id, replace=replace)
        self.index.upsert(employee.employee_id, employee.name, probe.vector)
        log.info("enrolled %s (replace=%s)", employee_id, replace)
        return Enrollment(employee, probe.face, self.model_id, template.created_at, replaced=existed)

    def employees(self, *, session: Session, offset: int, limit: int) -> tuple[list[Employee], int]:
        return repository.list_employees(session=session, offset=offset, limit=limit)

    def employee(self, *, session: Session, employee_id: str) -> Employee:
        employee = repository.get_employee(session=session, employee_id=employee_id)
        if employee is None:
            raise EmployeeNotFound(f"no employee {employee_id!r}")
        return employee

    def stale_templates(self, *, session: Session) -> int:
        """Templates made by another model than the one loaded: their employees must enroll again."""
        return repository.count_stale_templates(session=session, model_id=self.model_id)

    def verify(self, *, session: Session, employee_id: str, data: bytes, threshold: float | None,
               key_id: str | None = None) -> Verification:
        """1:1 at the calibrated threshold, or at a stricter one the caller asks for (never a looser one).

        A failed verification counts against the employee and the key (app.services.attempts); once either
        has used up its failures, the photo is not even looked at.
        """
        if threshold is not None and threshold > self.threshold:
            raise ThresholdTooLoose(f"threshold {threshold:g} is looser than the calibrated {self.threshold:.4f}; "
                                    "a request may only make the decision stricter")
        self.attempts.check(session, employee_id=employee_id, key_id=key_id)
        reference = self.index.vector(employee_id)
        if reference is None:
            self._raise_missing(session, employee_id)
        probe = self.probe(data)
        distance = float(np.linalg.norm(probe.vector - reference))
        threshold = self.threshold if threshold is None else threshold
        match = distance <= threshold
        if not match:
            self.attempts.record(session, employee_id=employee_id, key_id=key_id)
        return Verification(employee_id, match, distance, threshold, self.model_id, probe.face)

    def identify(self, *, data: bytes, top_k: int) -> Identification:
        """The nearest employee if they are within the 1:N threshold, and the `top_k` nearest as candidates
        when the settings show candidates (off by default: a door's key must not list names for any photo)."""
        probe = self.probe(data)
        threshold = self.identify_threshold
        candidates = self.index.search(probe.vector, top_k if self.settings.identify_candidates else 1)
        best = candidates[0] if candidates and candidates[0].distance <= threshold else None
        shown = candidates if self.settings.identify_candidates else [best] if best else []
        return Identification(best, shown, threshold, self.model_id, probe.face)

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

