"""Enroll, verify and identify: the decisions live here (face policy, thresholds, open-set rejection).

Order of work in every write: the photo is fully processed before the database is touched, the database
commits before the index changes. A bad photo or a failed commit therefore leaves both as they were.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property
from typing import TypeVar

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from app.core import metrics
from app.core.config import Settings
from app.core.errors import (
    EmployeeExists,
    EmployeeNotFound,
    Forbidden,
    GroupNotFound,
    LastReference,
    LivenessFailed,
    ModelChanging,
    NotOnePerson,
    NotReady,
    PoorQuality,
    ReferenceConflict,
    ReferenceNotFound,
    StaleTemplate,
    ThresholdTooLoose,
    TooManyPhotos,
    TooManyReferences,
)
from app.core.memory import release_freed_memory
from app.gallery import groups as gallery_groups
from app.gallery import repository
from app.gallery.index import EmbeddingIndex, Match, Template  # Match: the candidates identify answers with
from app.gallery.models import AuditRecord, Employee
from app.gallery.models import Template as StoredTemplate
from app.services.attempts import FailedAttempts
from app.services.batcher import MicroBatcher
from app.services.conflicts import retried
from app.services.keys import audited
from app.services.references import ReferenceCipher, Sealed
from model.card.curves import (
    VERIFY_FAR,
    identify_score_threshold,
    identify_threshold,
    interpolated,
    interpolated_threshold,
)
from model.card.scores import as_norm, fuse
from model.faces.config import Quality, QualityCheck, Views
from model.faces.decode import decode_image
from model.faces.embedder import Embedder
from model.faces.errors import FaceError, ImageTooLarge
from model.faces.liveness import BurstFaces, HeadPose, Prompt, check_turns
from model.faces.pipeline import FaceBox, FacePipeline
from model.faces.prepare import prepare_assessed
from model.faces.quality import assess

log = logging.getLogger(__name__)
T = TypeVar("T")
# A liveness burst's consecutive frames must be of one person at the distance of this false accept rate.
TURN_FAR = 0.1
BURST_WORKERS = 2  # the frames of a liveness burst read at once (Recognition.live_burst)
# A photo over this many bytes decodes to tens of megabytes: once it is done with, the heap is trimmed.
LARGE_PHOTO_BYTES = 256 << 10


@contextmanager
def named_in_errors(what: str, number: int, count: int) -> Iterator[None]:
    """A photo's own refusal (no face, poor quality, ...), when it is one of `count` in the request, names which:
    "photo 2: no face was found in the photo"."""
    try:
        yield
    except (FaceError, PoorQuality) as exc:
        if count > 1:
            exc.message = f"{what} {number}: {exc.message}"
        raise


@dataclass(frozen=True)
class Probe:
    """A photo turned into an embedding."""

    face: FaceBox
    vector: np.ndarray
    quality: Quality
    frames: int = 1  # fused into the vector (a burst)


@dataclass(frozen=True)
class Enrollment:
    employee_id: str
    name: str | None
    face: FaceBox
    model_id: str
    enrolled_at: datetime
    replaced: bool  # an existing reference was replaced
    quality: Quality
    slot: int = 0  # the reference's slot: 0 for an enrollment's photo, 1 and up for those added to it
    references: int = 1  # how many the employee now has


@dataclass(frozen=True)
class Reference:
    slot: int
    enrolled_at: datetime


@dataclass(frozen=True)
class EmployeeView:
    """An employee as the API shows them: with the references of the serving model when they have templates of
    it (during a model upgrade an employee has templates of two models), or else of the model they have."""

    employee_id: str
    name: str | None
    updated_at: datetime
    model_id: str | None
    current_model: bool
    references: list[Reference]
    groups: list[str]

    @property
    def enrolled_at(self) -> datetime | None:
        return self.references[0].enrolled_at if self.references else None

    @classmethod
    def of(cls, employee: Employee, serving_model: str, groups: list[str]) -> EmployeeView:
        templates = sorted(employee.templates, key=lambda t: (t.model_id != serving_model, t.slot))
        model_id = templates[0].model_id if templates else None
        return cls(employee.employee_id, employee.name, employee.updated_at, model_id,
                   model_id == serving_model,
                   [Reference(t.slot, t.created_at) for t in templates if t.model_id == model_id], groups)


# The rules /verify and /identify decide by: the AS-norm score against the model's cohort, or, for a model
# (or augmentation) without one, or with FACEGATE_THRESHOLD set, the distance.
AS_NORM, DISTANCE = "as-norm", "distance"


@dataclass(frozen=True)
class Verification:
    employee_id: str
    match: bool
    distance: float
    threshold: float  # in the rule's units: a score to reach (as-norm), or a distance not to exceed
    model_id: str
    face: FaceBox
    quality: Quality
    references: int = 1  # fused into the template the photo was compared with
    score: float | None = None  # the AS-norm score, under that rule
    rule: str = DISTANCE


@dataclass(frozen=True)
class Identification:
    match: Match | None
    candidates: list[Match]
    threshold: float  # in the rule's units: a score to reach (as-norm), or a distance not to exceed
    rule: str
    model_id: str
    face: FaceBox
    quality: Quality
    searched: int = 0  # templates searched: N of the 1:N rule


def face_chips(data: bytes, *, settings: Settings, pipeline: FacePipeline,
               views: Views | None) -> tuple[FaceBox, np.ndarray, Quality]:
    """Photo bytes -> the chosen face, its chip (or `views`) and its quality, under the service's limits and face
    policy."""
    if len(data) > settings.photos.max_upload_bytes:
        raise ImageTooLarge(f"the photo is {len(data)} bytes; the limit is {settings.photos.max_upload_bytes}")
    return prepare_assessed(data, pipeline, settings.photos.face_policy, views, timer=metrics.stage_timer)


def quality_checks(quality: Quality, settings: Settings) -> list[QualityCheck]:
    """The enrollment checks (FACEGATE_QUALITY_*) of this face; none when FACEGATE_ENROLL_QUALITY=false."""
    return settings.quality.policy.checks(quality) if settings.quality.enforce else []


def check_quality(quality: Quality, settings: Settings) -> None:
    """Refuse a reference photo below the quality thresholds (FACEGATE_QUALITY_*), saying what falls short."""
    failures = [check.text for check in quality_checks(quality, settings) if not check.passed]
    if failures:
        raise PoorQuality("the photo is not good enough to be a reference: " + "; ".join(failures)
                          + ". Take another (an admin may pass force=true)")


@retried
def save_enrollment(*, session: Session, employee_id: str, name: str | None, vectors: dict[str, np.ndarray],
                    replace: bool, photo: Sealed | None = None,
                    more: list[tuple[dict[str, np.ndarray], Sealed | None]] = ()
                    ) -> tuple[Employee, dict[str, StoredTemplate], bool]:
    """The one write of an enrollment (API enroll and replace, bulk enrollment): the employee, their templates
    (model id -> vector: the serving model's, and the next one's while app.cli.reembed rolls it out), the sealed
    photo when the reference store is on (an older photo is deleted either way), and the change feed's row,
    committed together. `more`: the templates and photos of the sitting's other references, in slots 1, 2...
    Returns (employee, slot 0's templates by model id, whether they existed).

    Races: a concurrent enroll of the same id (or of one differing only in case) makes this one 409; a
    replace whose employee is deleted under it looks again, and enrolls them anew; an enrollment without a
    template of a model that has just become the gallery's active one is not written (503 model_changing).
    """
    for attempt in (1, 2):
        employee = repository.get_employee(session=session, employee_id=employee_id, for_update=replace)
        existed = employee is not None
        if existed and not replace:
            raise EmployeeExists(f"employee {employee_id!r} is already enrolled; use replace=true to replace")
        try:
            if employee is None:
                employee = repository.add_employee(session=session, employee_id=employee_id, name=name)
            elif name is not None:
                employee.name = name
            templates = repository.set_templates(session=session, employee=employee, vectors=vectors)
            _store_photo(session, employee, photo, slot=0, only=True)
            for slot, (more_vectors, more_photo) in enumerate(more, start=1):
                if set(more_vectors) != set(vectors):  # the next model refused one photo of several
                    more_vectors = {m: v for m, v in more_vectors.items() if m in vectors}
                repository.add_templates(session=session, employee=employee, slot=slot, vectors=more_vectors)
                _store_photo(session, employee, more_photo, slot=slot)
            _commit_unless_model_changed(session, vectors)
            return employee, templates, existed
        except (IntegrityError, StaleDataError) as exc:
            session.rollback()
            if not replace or attempt == 2:
                raise EmployeeExists(f"employee {employee_id!r} (or an id differing only in case) is already "
                                     "enrolled") from exc
    raise AssertionError("unreachable")


@retried
def save_reference(*, session: Session, employee_id: str, vectors: dict[str, np.ndarray], max_references: int,
                   photo: Sealed | None = None) -> tuple[Employee, dict[str, StoredTemplate], int]:
    """The one write of an added reference: its templates (model id -> vector) in the employee's next free slot,
    its sealed photo, and the change feed's row. Returns (employee, templates by model id, slot).

    Races: the employee is read for update (repository.get_employee), so two additions at once take turns and
    the second sees the first's slot; should a write still collide, it looks once more, then answers 409
    reference_conflict. An employee deleted meanwhile is not found."""
    for attempt in (1, 2):
        employee = repository.get_employee(session=session, employee_id=employee_id, for_update=True)
        if employee is None:
            raise EmployeeNotFound(f"no employee {employee_id!r}")
        slots = repository.slots(employee)
        if len(slots) >= max_references:
            raise TooManyReferences(f"employee {employee_id!r} already has {len(slots)} references, the most "
                                    f"allowed (FACEGATE_MAX_REFERENCES); remove one first")
        slot = max(slots, default=-1) + 1
        try:
            templates = repository.add_templates(session=session, employee=employee, slot=slot, vectors=vectors)
            _store_photo(session, employee, photo, slot=slot)
            _commit_unless_model_changed(session, vectors)
            return employee, templates, slot
        except (IntegrityError, StaleDataError) as exc:
            session.rollback()
            if attempt == 2:
                raise ReferenceConflict(f"employee {employee_id!r}'s references changed meanwhile; try again") from exc
    raise AssertionError("unreachable")


def _store_photo(session: Session, employee: Employee, photo: Sealed | None, *, slot: int, only: bool = False
                 ) -> None:
    """Keep the sealed photo in `slot` (the reference store), or with the store off make sure none is left
    there; `only`: and none in any other slot."""
    if photo is None:
        repository.set_reference(session=session, employee=employee, slot=slot, only=only)
    else:
        repository.set_reference(session=session, employee=employee, slot=slot, key_id=photo.key_id,
                                 nonce=photo.nonce, ciphertext=photo.ciphertext, only=only)


def _commit_unless_model_changed(session: Session, vectors: dict[str, np.ndarray]) -> None:
    """Commit a write of templates, unless the gallery's active model is one they lack (503 model_changing)."""
    active = repository.active_model(session=session, lock=True)
    if active is not None and active not in vectors:
        session.rollback()
        raise ModelChanging(f"the gallery now serves model {active}; this replica switches to it within a second: "
                            "try again")
    session.commit()


def of_kind(by_references: dict[int, T], references: int) -> T:
    """A card's calibration for templates fused from this many references: the most it calibrated, for more."""
    return by_references[min(references, max(by_references))]


def serving_vectors(employee: Employee, model_id: str) -> np.ndarray | None:
    """The employee's templates of `model_id`, stacked in slot order (what the index holds), or None."""
    templates = sorted((t for t in employee.templates if t.model_id == model_id), key=lambda t: t.slot)
    return np.stack([t.vector for t in templates]) if templates else None


@dataclass
class Serving:
    """A model and what serves it: its faces pipeline, its index of templates (None for a model being rolled
    out, which serves nothing yet) and its micro-batcher. A model switch swaps one Serving for another."""

    embedder: Embedder
    pipeline: FacePipeline
    index: EmbeddingIndex | None = None
    batcher: MicroBatcher | None = None

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    @cached_property
    def far_levels(self) -> dict[float, float]:
        """The 1:N distance curve of the model card, read once."""
        return self.embedder.card.far_levels_for(self.embedder.augment)

    @cached_property
    def normalised_levels(self) -> dict[int, dict[float, float]]:
        """{R: the 1:N curve of AS-norm scores for templates fused from R}, when the model has a cohort for its
        augmentation."""
        return self.embedder.card.normalised_levels_for(self.embedder.augment) if self.embedder.cohort else {}

    @cached_property
    def fused_far_levels(self) -> dict[int, dict[float, float]]:
        """{R >= 2: the 1:N distance curve of templates fused from R}, for the model's augmentation."""
        return self.embedder.card.fused_far_levels_for(self.embedder.augment)

    @cached_property
    def references_levels(self) -> dict[int, float]:
        """{R: the 1:1 threshold of a template fused from R references}, for the model's augmentation."""
        return self.embedder.card.references_levels_for(self.embedder.augment)

    @property
    def rule(self) -> str:
        return AS_NORM if self.normalised_levels else DISTANCE

    def score(self, template: Template, probe: np.ndarray, probe_stats: tuple[float, float]) -> float:
        """The AS-norm score of a probe (with its cohort statistics) against an employee's template."""
        return float(as_norm(float(template.vector @ probe), template.cohort_mean, template.cohort_sd, *probe_stats))


class RecognitionService:
    """Every request reads `serving` once and uses that model throughout, so that a model switch in the middle
    of a request never makes it compare templates of two models."""

    def __init__(self, *, settings: Settings, serving: Serving, upcoming: Serving | None = None,
                 cipher: ReferenceCipher | None = None) -> None:
        self.settings, self.serving, self.upcoming, self.cipher = settings, serving, upcoming, cipher
        self.attempts = FailedAttempts(settings)
        # Why this replica cannot serve (the gallery switched to a model it has not loaded), or None.
        self.unavailable: str | None = None

    @property
    def embedder(self) -> Embedder:
        return self.serving.embedder

    @property
    def index(self) -> EmbeddingIndex:
        return self.serving.index

    @property
    def batcher(self) -> MicroBatcher | None:
        return self.serving.batcher

    @property
    def model_id(self) -> str:
        return self.serving.model_id

    def switch(self, serving: Serving) -> None:
        """Serve `serving` from now on (its index already filled); the model that was upcoming is no more."""
        self.serving, self.upcoming, self.unavailable = serving, None, None

    def threshold_of(self, serving: Serving, references: int = 1) -> float:
        """The 1:1 (verify) threshold for a template fused from this many references: FACEGATE_THRESHOLD when
        set; else, for one reference, the card's default, and for more the card's calibration for that many
        (the most it calibrated, for more still); else, on a card without those, its default."""
        if self.settings.model.threshold is not None:
            return self.settings.model.threshold
        if references > 1 and serving.references_levels:
            return of_kind(serving.references_levels, references)
        return serving.embedder.card.threshold_for(serving.embedder.augment)

    @property
    def threshold(self) -> float:
        """The 1:1 distance threshold for an employee with one reference."""
        return self.threshold_of(self.serving)

    def rule_of(self, serving: Serving) -> str:
        """The rule /verify and /identify decide by: as-norm with the model's cohort, unless FACEGATE_THRESHOLD
        fixes a distance."""
        return serving.rule if self.settings.model.threshold is None else DISTANCE

    def score_threshold_of(self, serving: Serving, references: int = 1) -> float:
        """The 1:1 AS-norm threshold for a template fused from this many references: the card's normalised
        tail for that kind at the default's FAR (1e-3)."""
        return interpolated(of_kind(serving.normalised_levels, references), VERIFY_FAR)

    def identify_threshold_of(self, serving: Serving, references: int = 1, gallery_size: int | None = None
                              ) -> float:
        """The 1:N threshold for a template fused from this many references in a search of `gallery_size`
        templates (default: the whole gallery as it is now) at `FACEGATE_IDENTIFY_FPIR`, in the units of the
        serving model's rule: an AS-norm score to reach, or a distance not to exceed."""
        fpir = self.settings.identify.fpir
        size = len(serving.index) if gallery_size is None else gallery_size
        if self.rule_of(serving) == AS_NORM:
            return identify_score_threshold(of_kind(serving.normalised_levels, references), fpir=fpir,
                                            gallery_size=size)
        fused = serving.fused_far_levels
        levels = of_kind(fused, references) if references > 1 and fused else serving.far_levels
        return identify_threshold(levels, fpir=fpir, gallery_size=size, ceiling=self.threshold_of(serving, references))

    @property
    def identify_threshold(self) -> float:
        return self.identify_threshold_of(self.serving)

    def _serving(self) -> Serving:
        if self.unavailable:
            raise NotReady(self.unavailable)
        return self.serving

    def burst(self, frames: list[bytes], serving: Serving) -> Probe:
        """One presentation at the door, in 1 to FACEGATE_MAX_FRAMES frames: one probe, the frames' vectors fused
        as references are. The frames must all show one person (NotOnePerson otherwise); the face and quality
        reported are the first frame's. A decision treats a probe of F frames against a template of R
        references as a template of max(R, F) (the kind: AS-norm is symmetric in the two), which is stricter
        for a burst than for a single frame."""
        if not 1 <= len(frames) <= self.settings.photos.max_frames:
            raise TooManyPhotos(f"{len(frames)} frames; a request takes 1 to {self.settings.photos.max_frames} "
                                "(FACEGATE_MAX_FRAMES)")
        probes = []
        for number, data in enumerate(frames, start=1):
            with named_in_errors("frame", number, len(frames)):
                probes.append(self.probe(data, serving))
        if len(probes) == 1:
            return probes[0]
        self._check_one_person([p.vector for p in probes], serving, what="frame")
        return Probe(probes[0].face, fuse(np.stack([p.vector for p in probes])), probes[0].quality, len(probes))

    def live_burst(self, frames: list[bytes], serving: Serving, prompts: tuple[Prompt, ...]) -> Probe:
        """A burst answering a liveness challenge (up to FACEGATE_LIVENESS_MAX_FRAMES frames): each frame must
        show exactly one face, the head must turn as `prompts` ask and as a head does (model.faces.liveness;
        LivenessFailed names the check that failed), and all frames must show one person. The probe fuses
        the frames that face the camera: the turns prove a live head, the frontal frames say whose."""
        rules, limit = self.settings.liveness.rules, self.settings.liveness.max_frames
        if len(frames) > limit:  # too few cannot show the turns: the check says so (liveness_failed)
            raise TooManyPhotos(f"{len(frames)} frames; a challenge's burst takes at most {limit} "
                                "(FACEGATE_LIVENESS_MAX_FRAMES)")
        policy = replace(self.settings.photos.face_policy, multi_face="reject",
                         max_pixels=min(self.settings.liveness.max_frame_pixels,
                                        self.settings.photos.face_policy.max_pixels))
        faces, views = BurstFaces(serving.pipeline, policy, metrics.stage_timer), serving.embedder.views.to_align

        def read(number: int, data: bytes) -> tuple[HeadPose, np.ndarray, Quality | None, FaceBox]:
            """A frame's head pose, its chips, for the first frame (which faces the camera) its quality, and
            its face."""
            with named_in_errors("frame", number, len(frames)), metrics.stage_timer("decode"):
                rgb = decode_image(data, max_pixels=policy.max_pixels, max_bytes=policy.max_decode_bytes)
            face = faces.face(number, rgb)
            with metrics.stage_timer("liveness"):
                shape = serving.pipeline.shape(rgb, face) if rules.min_shape else ()
                head = HeadPose.of(face.landmarks, shape)
            with metrics.stage_timer("align"):
                chips = serving.pipeline.align(rgb, face, views)
            if number > 1:
                return head, chips, None, face
            with metrics.stage_timer("quality"):
                return head, chips, assess(rgb, face), face

        # Two frames at a time: HOG lets go of the GIL and the CNN runs in its own process, so one frame's
        # looks use one core while the other's use the other (on the webcam sample, 15 frames that only the CNN
        # finds: 1.9 s one at a time). Each frame is decoded, looked at and aligned by one worker, so that at most
        # two decoded frames are held at once; the first frame refused, in the burst's order, is the answer.
        with ThreadPoolExecutor(BURST_WORKERS, thread_name_prefix="burst") as pool:
            reads = [pool.submit(read, number, data) for number, data in enumerate(frames, start=1)]
            try:
                seen = [(head, chips) for head, chips, _, _ in (r.result() for r in reads)]
            except BaseException:
                for r in reads:
                    r.cancel()
                raise
        _, _, quality, first = reads[0].result()
        with metrics.stage_timer("liveness"):
            verdict = check_turns([head for head, _ in seen], prompts, rules)
        if not verdict.passed:
            raise LivenessFailed(f"liveness check failed ({verdict.check}): {verdict.detail}", verdict.check)
        with metrics.stage_timer("embed"):
            vectors = serving.embedder.embed(np.stack([chips for _, chips in seen]))
        # One person: every frame facing the camera with every other, at the 1:1 threshold; and each frame
        # with the one before it, at the card's distance for a false accept rate of TURN_FAR: a head turned
        # 60 degrees is further from its frontal self than a stranger is at the 1:1 threshold (0.42 against
        # 0.37 on the webcam sample), so a live head swapped for someone's photo is caught only at that rate.
        frontal = verdict.frontal
        self._check_one_person(list(vectors), serving, what="frame",
                               pairs=[(frontal[i], frontal[j]) for i in range(len(frontal)) for j in range(i)])
        self._check_one_person(list(vectors), serving, what="frame",
                               pairs=[(i, i - 1) for i in range(1, len(vectors))],
                               threshold=interpolated_threshold(serving.far_levels, TURN_FAR))
        return Probe(first, fuse(vectors[list(frontal)]), quality, len(frontal))

    def probe(self, data: bytes, serving: Serving | None = None, *, reference: bool = False) -> Probe:
        """`reference`: the photo is to be an enrollment's, and must pass the quality thresholds first."""
        serving = serving or self._serving()
        try:
            face, chips, quality = face_chips(data, settings=self.settings, pipeline=serving.pipeline,
                                              views=serving.embedder.views.to_align)
        finally:
            if len(data) > LARGE_PHOTO_BYTES:  # its decode's pages go back to the system, not to a fragment
                release_freed_memory()
        if reference:
            check_quality(quality, self.settings)
        with metrics.stage_timer("embed"):  # with micro-batching, the wait for the batch included
            vector = serving.batcher.embed(chips) if serving.batcher else serving.embedder.embed(chips[None])[0]
        return Probe(face, vector, quality)

    def _reference(self, data: bytes, serving: Serving, *, employee_id: str, force: bool
                   ) -> tuple[Probe, dict[str, np.ndarray], Sealed | None]:
        """A reference photo's probe, its vectors by model id (the serving model's, and the next one's while
        app.cli.reembed rolls it out) and the photo sealed for the reference store (None with the store off).
        `force`: even below the quality thresholds."""
        probe = self.probe(data, serving, reference=not force)
        vectors = {serving.model_id: probe.vector}
        if self.upcoming is not None:
            try:
                vectors[self.upcoming.model_id] = self.probe(data, self.upcoming).vector
            except FaceError as exc:  # app.cli.reembed lists the employee for re-enrollment
                log.warning("the next model's pipeline refused %s's photo (%s)", employee_id, exc.code)
        photo = self.cipher.seal(data, employee_id) if self.cipher is not None else None
        return probe, vectors, photo

    def check_reference(self, data: bytes) -> tuple[FaceBox, Quality, list[QualityCheck]]:
        """What enrollment would say of this photo (its face, quality and checks), with nothing embedded or
        stored. A photo the face policy refuses raises as it would at /enroll."""
        serving = self._serving()
        face, _, quality = face_chips(data, settings=self.settings, pipeline=serving.pipeline, views=None)
        return face, quality, quality_checks(quality, self.settings)

    def enroll(self, *, session: Session, employee_id: str, name: str | None, photos: list[bytes],
               replace: bool, force: bool = False) -> Enrollment:
        """Enroll one reference photo, or several taken in one sitting (up to FACEGATE_MAX_REFERENCES); a replace
        makes them the employee's only ones. `force`: enroll even photos below the quality thresholds.

        All or nothing: every photo must pass the face and quality checks, and all must show one person (each
        within the 1:1 threshold of every other), or nothing is stored."""
        serving = self._serving()
        if not 1 <= len(photos) <= self.settings.references.max:
            raise TooManyPhotos(f"{len(photos)} photos; an enrollment takes 1 to {self.settings.references.max} "
                                "(FACEGATE_MAX_REFERENCES)")
        references = []
        for number, data in enumerate(photos, start=1):
            with named_in_errors("photo", number, len(photos)):
                references.append(self._reference(data, serving, employee_id=employee_id, force=force))
        self._check_one_person([probe.vector for probe, _, _ in references], serving, what="photo")
        (probe, vectors, photo), *more = references
        employee, templates, existed = save_enrollment(session=session, employee_id=employee_id, name=name,
                                                       vectors=vectors, replace=replace, photo=photo,
                                                       more=[(v, p) for _, v, p in more])
        serving.index.upsert(employee.employee_id, employee.name, np.stack([p.vector for p, _, _ in references]))
        log.info("enrolled %s with %d photo(s) (replace=%s)", employee_id, len(photos), replace)
        return Enrollment(employee.employee_id, employee.name, probe.face, serving.model_id,
                          templates[serving.model_id].created_at, replaced=existed, quality=probe.quality,
                          references=len(photos))

    def _check_one_person(self, vectors: list[np.ndarray], serving: Serving, *, what: str,
                          pairs: list[tuple[int, int]] | None = None, threshold: float | None = None) -> None:
        """Refuse photos (or frames) that are not all of one person: each pair (every pair, or those of `pairs`)
        must be within `threshold` (default: the 1:1 one). Raises NotOnePerson naming the first pair that is not."""
        threshold = self.threshold_of(serving) if threshold is None else threshold
        if pairs is None:
            pairs = [(i, j) for i in range(len(vectors)) for j in range(i)]
        for i, j in pairs:
            distance = float(np.linalg.norm(vectors[i] - vectors[j]))
            if distance > threshold:
                stored = "; nothing was stored" if what == "photo" else ""  # an enrollment's; a burst stores nothing
                raise NotOnePerson(f"{what} {i + 1} is not the same person as {what} {j + 1} (distance "
                                   f"{distance:.3f} > {threshold:.4f}){stored}")

    def add_reference(self, *, session: Session, employee_id: str, data: bytes, force: bool = False) -> Enrollment:
        """Add one more reference photo to an enrolled employee (up to FACEGATE_MAX_REFERENCES in all)."""
        serving = self._serving()
        probe, vectors, photo = self._reference(data, serving, employee_id=employee_id, force=force)
        employee, templates, slot = save_reference(session=session, employee_id=employee_id, vectors=vectors,
                                                   max_references=self.settings.references.max, photo=photo)
        references = self._refresh(employee, serving)
        log.info("added reference %d of %s", slot, employee_id)
        return Enrollment(employee.employee_id, employee.name, probe.face, serving.model_id,
                          templates[serving.model_id].created_at, replaced=False, quality=probe.quality, slot=slot,
                          references=references)

    @retried
    def remove_reference(self, *, session: Session, employee_id: str, slot: int) -> None:
        """Remove one of an employee's references; the last one goes only with the employee (DELETE)."""
        serving = self.serving
        employee = repository.get_employee(session=session, employee_id=employee_id, for_update=True)
        if employee is None:
            raise EmployeeNotFound(f"no employee {employee_id!r}")
        slots = repository.slots(employee)
        if slot not in slots:
            raise ReferenceNotFound(f"employee {employee_id!r} has no reference {slot}; they have {slots}")
        if len(slots) == 1:
            raise LastReference(f"reference {slot} is employee {employee_id!r}'s only one; delete the employee, "
                                "or add another reference first")
        repository.delete_slot(session=session, employee=employee, slot=slot)
        session.commit()
        self._refresh(employee, serving)
        log.info("removed reference %d of %s", slot, employee_id)

    @staticmethod
    def _refresh(employee: Employee, serving: Serving) -> int:
        """Put the employee's committed templates of the serving model in its index; returns how many."""
        vectors = serving_vectors(employee, serving.model_id)
        if vectors is None:
            serving.index.remove(employee.employee_id)
            return 0
        serving.index.upsert(employee.employee_id, employee.name, vectors)
        return len(vectors)

    def employees(self, *, session: Session, offset: int, limit: int, search: str | None = None,
                  group: str | None = None) -> tuple[list[EmployeeView], int]:
        """A page of employees; `group`: only its members."""
        group_pk = None
        if group is not None:
            found = gallery_groups.get_group(session=session, group_id=group)
            if found is None:
                raise GroupNotFound(f"no group {group!r}")
            group_pk = found.id
        employees, total = repository.list_employees(session=session, offset=offset, limit=limit, search=search,
                                                      group_pk=group_pk)
        return self.views(session, employees), total

    def views(self, session: Session, employees: list[Employee]) -> list[EmployeeView]:
        """The employees as the API shows them, their groups read in one query."""
        groups = gallery_groups.groups_of(session=session, employee_ids=[e.employee_id for e in employees])
        return [EmployeeView.of(e, self.model_id, groups[e.employee_id]) for e in employees]

    def employee(self, *, session: Session, employee_id: str) -> EmployeeView:
        employee = repository.get_employee(session=session, employee_id=employee_id)
        if employee is None:
            raise EmployeeNotFound(f"no employee {employee_id!r}")
        return self.views(session, [employee])[0]

    def audit_records(self, *, session: Session, **filters: object) -> tuple[list[AuditRecord], int]:
        """The audit trail, filtered and paged (repository.audit_records)."""
        return repository.audit_records(session=session, **filters)

    def stale_templates(self, *, session: Session) -> int:
        """Templates made by another model than the one loaded: their employees must enroll again."""
        return repository.count_stale_templates(session=session, model_id=self.model_id)

    def verify(self, *, session: Session, employee_id: str, frames: list[bytes], threshold: float | None,
               key_id: str | None = None, within: Collection[str] | None = None,
               prompts: tuple[Prompt, ...] | None = None) -> Verification:
        """1:1 at the calibrated threshold, or at a stricter one the caller asks for (never a looser one).

        A failed verification counts against the employee and the key (app.services.attempts): the attempt is
        reserved before the photo is looked at, and given back unless it fails, so that no more than the limit
        of comparisons run in a window, however many arrive at once.

        An employee with several references is compared with their template, the references fused, at the
        threshold calibrated for templates of that many. With the model's cohort the AS-norm score decides
        (rule as-norm); a request's own `threshold` is a distance, which the match must then also be within.

        `within`: the caller reaches only the members of these groups (a door's key). Anyone else is answered
        as an unknown employee is, on the same path (404, no photo looked at), so that a key cannot learn who
        exists elsewhere.

        `prompts`: the frames answer a liveness challenge (live_burst). A burst that fails it is a failed attempt.
        """
        serving = self._serving()
        reachable = within is None or serving.index.is_within(employee_id, within)
        template = serving.index.template(employee_id) if reachable else None
        calibrated = self.threshold_of(serving, 1 if template is None else max(template.references, len(frames)))
        if threshold is not None and threshold > calibrated:
            raise ThresholdTooLoose(f"threshold {threshold:g} is looser than the calibrated {calibrated:.4f}; "
                                    "a request may only make the decision stricter")
        reservation = self.attempts.reserve(session, employee_id=employee_id, key_id=key_id,
                                            groups=audited(within))
        try:
            if template is None:
                self._raise_missing(session, employee_id, reachable=reachable)
            probe = self.burst(frames, serving) if prompts is None else self.live_burst(frames, serving, prompts)
        except LivenessFailed:
            raise  # a presentation that failed: it counts, as a wrong face does
        except BaseException:
            self.attempts.release(session, reservation)  # no decision was made: nothing failed
            raise
        calibrated = self.threshold_of(serving, max(template.references, probe.frames))
        distance = float(np.linalg.norm(template.vector - probe.vector))
        score = None
        if self.rule_of(serving) == AS_NORM:
            with metrics.stage_timer("score"):  # the probe's cohort statistics: /identify's search does the same
                score = serving.score(template, probe.vector, serving.index.probe_stats(probe.vector))
            decided_by = self.score_threshold_of(serving, max(template.references, probe.frames))
            match = score >= decided_by and (threshold is None or distance <= threshold)
        else:
            decided_by = calibrated if threshold is None else threshold
            match = distance <= decided_by
        if match:
            self.attempts.release(session, reservation)
        return Verification(employee_id, match, distance, decided_by, serving.model_id, probe.face, probe.quality,
                            references=template.references, score=score, rule=self.rule_of(serving))

    def identify(self, *, frames: list[bytes], top_k: int, within: Collection[str] | None = None,
                 prompts: tuple[Prompt, ...] | None = None) -> Identification:
        """The best employee if they pass the 1:N threshold, and the `top_k` best as candidates when the
        settings show candidates (off by default: a door's key must not list names for any photo).

        With the model's cohort the AS-norm score ranks and decides (the FPIR rule applies to it), and the
        named employee must also pass their template's 1:1 threshold: /identify never names someone whom
        /verify would refuse for the same photo. Without one, the distance ranks and decides.

        `within`: search only the members of these groups (a door's key, or an admin's `group`); N in the 1:N
        rule is then the number of templates searched. `prompts`: the frames answer a liveness challenge.
        """
        serving = self._serving()
        probe = self.burst(frames, serving) if prompts is None else self.live_burst(frames, serving, prompts)
        with metrics.stage_timer("search"):
            candidates = serving.index.search(probe.vector, top_k if self.settings.identify.candidates else 1,
                                              normalise=self.rule_of(serving) == AS_NORM, within=within)
        searched = serving.index.size_within(within)
        best, threshold = self.decide(serving, candidates[0] if candidates else None, frames=probe.frames,
                                      gallery_size=searched)
        shown = candidates if self.settings.identify.candidates else [best] if best else []
        return Identification(best, shown, threshold, self.rule_of(serving), serving.model_id, probe.face,
                              probe.quality, searched)

    def searched_groups(self, bound: frozenset[str] | None, asked: str | None) -> frozenset[str] | None:
        """The groups an /identify searches: the key's (`bound`; None: unbound), narrowed to the one the request
        names (`asked`). An unbound key may name any group that exists (404 group_not_found otherwise); a bound
        key only one of its own (403 forbidden otherwise, whether or not the group exists)."""
        if asked is None:
            return bound
        if bound is not None:
            if asked not in bound:
                raise Forbidden("this key is bound to its groups; `group` may name only one of them")
            return frozenset({asked})
        if not self.index.has_group(asked):
            raise GroupNotFound(f"no group {asked!r}")
        return frozenset({asked})

    def decide(self, serving: Serving, best: Match | None, frames: int = 1, gallery_size: int | None = None
               ) -> tuple[Match | None, float]:
        """(the employee named, or None; the 1:N threshold): the best candidate of a search among
        `gallery_size` templates (default: the whole index), if it passes the threshold for their kind of
        template (how many references it fuses, or frames the probe does, the larger: each kind has its own
        impostor tail, so that every template keeps the per-comparison FAR the FPIR rule assumes)."""
        kind = max(best.references if best else 1, frames)
        threshold = self.identify_threshold_of(serving, kind, gallery_size)
        if best is None:
            return None, threshold
        if self.rule_of(serving) == AS_NORM:
            passes = best.score >= max(threshold, self.score_threshold_of(serving, kind))
        else:
            passes = best.distance <= threshold
        return (best if passes else None), threshold

    @retried
    def delete(self, *, session: Session, employee_id: str) -> None:
        # for update: a delete racing another waits for it, then finds no one (404), not a row already gone
        employee = repository.get_employee(session=session, employee_id=employee_id, for_update=True)
        if employee is None:
            raise EmployeeNotFound(f"no employee {employee_id!r}")
        repository.delete_employee(session=session, employee=employee)  # their photos and memberships too
        session.commit()
        index = self.serving.index
        index.remove(employee_id)
        with index.groups_lock:  # app.gallery.feed.refresh_groups
            index.set_groups_of(employee_id, ())
        log.info("deleted %s", employee_id)

    def _raise_missing(self, session: Session, employee_id: str, *, reachable: bool = True) -> None:
        if repository.get_employee(session=session, employee_id=employee_id) is None or not reachable:
            raise EmployeeNotFound(f"no employee {employee_id!r}")
        raise StaleTemplate(f"employee {employee_id!r} was enrolled with another model; enroll again")

