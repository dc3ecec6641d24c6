"""POST /enroll, /verify and /identify. Each view parses the request and calls the service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile

from app.api.deps import (
    AdminCaller,
    AuditDep,
    LivenessDep,
    ServiceDep,
    SessionDep,
    VerifyCaller,
    fields_as_declared,
)
from app.api.schemas import (
    CandidateOut,
    EnrollCheckOut,
    EnrollOut,
    ErrorOut,
    FaceOut,
    IdentifyOut,
    QualityCheckOut,
    QualityOut,
    VerifyOut,
)
from app.core.identifiers import CHALLENGE_ID_PATTERN, EMPLOYEE_ID_PATTERN, GROUP_ID_PATTERN, NAME_PATTERN, NAME_RULE
from app.services.keys import audited
from app.services.recognition import Match, RecognitionService
from model.faces.config import Quality
from model.faces.pipeline import FaceBox

router = APIRouter(tags=["faces"], dependencies=[Depends(fields_as_declared)])

AUTH_ERRORS = {
    401: {"model": ErrorOut, "description": "unauthorized: no API key, or an unknown or revoked one"},
    403: {"model": ErrorOut, "description": "forbidden: the key's scope does not cover this endpoint"},
}
# A body the form or JSON parser refuses (a field over 1 MiB, too many fields, no boundary, not JSON).
BODY_ERRORS = {400: {"model": ErrorOut, "description": "http_error: a body the parser refuses"}}
PHOTO_ERRORS = {**AUTH_ERRORS, **BODY_ERRORS,
    413: {"model": ErrorOut, "description": "image_too_large: too many bytes or pixels"},
    422: {"model": ErrorOut, "description": "invalid_image, no_face, multiple_faces, face_too_small, "
                                            "validation_error, too_many_photos, not_one_person, or (enroll) "
                                            "poor_quality"},
}
EmployeeIdForm = Annotated[str, Form(pattern=EMPLOYEE_ID_PATTERN, examples=["e-1042"],
                                     description="1-64 of A-Z a-z 0-9 . _ @ -, starting with a letter or digit")]
ImageFile = Annotated[UploadFile, File(description="a photo: JPEG, PNG, WebP, BMP, TIFF...")]
PhotosFile = Annotated[list[UploadFile], File(min_length=1, description="a photo (JPEG, PNG, WebP, BMP, TIFF...), "
                                                         "or several: the field repeated, all within the body's size "
                                                         "limit")]
ChallengeForm = Annotated[str | None, Form(pattern=CHALLENGE_ID_PATTERN,
                                           description="a liveness challenge's id (POST /liveness/challenge): the "
                                                       "frames are its burst, and must answer it")]
LIVENESS_ERRORS = {
    403: {"model": ErrorOut, "description": "forbidden; or liveness_required: the key must answer a challenge"},
    404: {"model": ErrorOut, "description": "challenge_not_found (and, at /verify, employee_not_found)"},
    409: {"model": ErrorOut, "description": "challenge_used, challenge_expired (and, at /verify, stale_template)"},
    422: {"model": ErrorOut, "description": PHOTO_ERRORS[422]["description"] + ", liveness_failed"},
}


def read_photo(image: UploadFile, service: RecognitionService) -> bytes:
    # One byte past the limit is enough to know it is too large, without reading the rest.
    return image.file.read(service.settings.photos.max_upload_bytes + 1)


def read_photos(images: list[UploadFile], service: RecognitionService) -> list[bytes]:
    return [read_photo(image, service) for image in images]


def face_out(face: FaceBox) -> FaceOut:
    return FaceOut(box=(face.x, face.y, face.width, face.height), score=face.score)


def quality_out(quality: Quality) -> QualityOut:
    return QualityOut(**quality.as_dict())


def candidate_out(match: Match) -> CandidateOut:
    return CandidateOut(employee_id=match.employee_id, name=match.name, distance=match.distance, score=match.score)


@router.post("/enroll", status_code=201, response_model=EnrollOut,
             responses={409: {"model": ErrorOut, "description": "employee_exists"}, **PHOTO_ERRORS})
def enroll(service: ServiceDep, session: SessionDep, audit: AuditDep, caller: AdminCaller,
           employee_id: EmployeeIdForm, image: PhotosFile,
           name: Annotated[str | None, Form(pattern=NAME_PATTERN, examples=["Ada Lovelace"],
                                            description=NAME_RULE)] = None,
           replace: Annotated[bool, Query(description="replace an existing reference photo")] = False,
           force: Annotated[bool, Query(description="enroll even a photo below the quality thresholds")] = False,
           ) -> EnrollOut:
    """Enroll an employee's reference photo (one face), or up to FACEGATE_MAX_REFERENCES taken in one sitting
    (`image` repeated): they are fused into one template. Scope: admin.

    Each photo must be a good reference: large, sharp, frontal and well exposed enough (FACEGATE_QUALITY_*).
    Otherwise 422 poor_quality says which check failed and by how much; `force=true` enrolls it anyway.
    Several photos must all show one person (422 not_one_person otherwise); all or nothing is stored.
    """
    with audit.record(caller, "replace" if replace else "enroll", employee_id) as entry:
        result = service.enroll(session=session, employee_id=employee_id, name=name,
                                photos=read_photos(image, service), replace=replace, force=force)
        entry.decision = "replaced" if result.replaced else "enrolled"
    return EnrollOut(employee_id=result.employee_id, name=result.name,
                     replaced=result.replaced, enrolled_at=result.enrolled_at, model_id=result.model_id,
                     references=result.references, face=face_out(result.face), quality=quality_out(result.quality))


@router.post("/enroll/check", response_model=EnrollCheckOut, responses=PHOTO_ERRORS)
def check_enrollment_photo(service: ServiceDep, _: AdminCaller, image: ImageFile) -> EnrollCheckOut:
    """What /enroll would say of this photo, with nothing stored: the face it would enroll, its quality and
    each check against FACEGATE_QUALITY_*. The console shows it before a photo is sent. Scope: admin.

    A photo without a usable face gets the same 4xx as at /enroll (no_face, multiple_faces...).
    """
    face, quality, checks = service.check_reference(read_photo(image, service))
    return EnrollCheckOut(face=face_out(face), quality=quality_out(quality), passes=all(c.passed for c in checks),
                          checks=[QualityCheckOut(check=c.name, bound=c.bound, limit=c.limit, value=c.value,
                                                  passed=c.passed, text=c.text) for c in checks])


@router.post("/verify", response_model=VerifyOut,
             responses={**PHOTO_ERRORS, **LIVENESS_ERRORS,
                        429: {"model": ErrorOut, "description": "too_many_attempts (see Retry-After)"}})
def verify(service: ServiceDep, liveness: LivenessDep, session: SessionDep, audit: AuditDep, caller: VerifyCaller,
           employee_id: EmployeeIdForm, image: PhotosFile,
           threshold: Annotated[float, Form(gt=0.0, le=2.0, description="a stricter threshold than the "
                                                   "calibrated one, for this request; a looser one is refused "
                                                   "(threshold_too_loose). A distance, whatever the rule")] = None,
           challenge_id: ChallengeForm = None) -> VerifyOut:
    """1:1 - is the person in the photo the employee they claim to be? Scope: verify (or admin).

    A door camera may send up to FACEGATE_MAX_FRAMES frames of one presentation (`image` repeated): they are
    fused into one probe, and must all show one person (422 not_one_person).

    With `challenge_id`, the frames (up to FACEGATE_LIVENESS_MAX_FRAMES) must answer that head-turn challenge
    first (422 liveness_failed names the check that failed; it counts as a failed attempt). A key that
    requires liveness is refused a request without one (403 liveness_required)."""
    with (audit.record(caller, "verify", employee_id) as entry,
          liveness.answering(entry, session=session, caller=caller, challenge_id=challenge_id) as prompts):
        entry.groups = audited(caller.groups)
        result = service.verify(session=session, employee_id=employee_id, frames=read_photos(image, service),
                                threshold=threshold, key_id=caller.key_id, within=caller.groups,
                                prompts=prompts)
        entry.decision, entry.distance = ("match" if result.match else "no_match"), result.distance
        entry.threshold, entry.score, entry.rule = result.threshold, result.score, result.rule
    return VerifyOut(employee_id=result.employee_id, match=result.match, distance=result.distance,
                     threshold=result.threshold, score=result.score, rule=result.rule,
                     references=result.references, model_id=result.model_id, liveness=challenge_id is not None,
                     face=face_out(result.face), quality=quality_out(result.quality))


@router.post("/identify", response_model=IdentifyOut,
             responses={**PHOTO_ERRORS, **LIVENESS_ERRORS,
                        404: {"model": ErrorOut, "description": "group_not_found, challenge_not_found"}})
def identify(service: ServiceDep, liveness: LivenessDep, session: SessionDep, audit: AuditDep, caller: VerifyCaller,
             image: PhotosFile,
             top_k: Annotated[int, Form(ge=1, le=100, description="candidates to list, when the service "
                                                  "lists candidates (FACEGATE_IDENTIFY_CANDIDATES)")] = 5,
             group: Annotated[str | None, Form(pattern=GROUP_ID_PATTERN, examples=["lab-3"],
                                               description="search only this group's members, as a door's key "
                                                           "bound to it would (a bound key: one of its own)")] = None,
             challenge_id: ChallengeForm = None) -> IdentifyOut:
    """1:N open set - who is this, if anyone? Scope: verify (or admin).

    The threshold keeps the share of strangers named as an employee at FACEGATE_IDENTIFY_FPIR (0.1 % by
    default) whatever the gallery's size, so it is stricter than /verify's; the response gives the one used and
    the rule it is in. Up to FACEGATE_MAX_FRAMES frames of one presentation are fused, as at /verify.

    A key bound to groups searches only their members, and N is their number; so does `group`.

    With `challenge_id`, the frames must answer that head-turn challenge first, as at /verify.
    """
    within = service.searched_groups(caller.groups, group)
    with (audit.record(caller, "identify") as entry,
          liveness.answering(entry, session=session, caller=caller, challenge_id=challenge_id) as prompts):
        entry.groups = audited(within)
        result = service.identify(frames=read_photos(image, service), top_k=top_k, within=within,
                                  prompts=prompts)
        entry.threshold, entry.rule = result.threshold, result.rule
        if result.match:
            entry.decision, entry.employee_id = "match", result.match.employee_id
            entry.distance, entry.score = result.match.distance, result.match.score
        else:
            entry.decision = "unknown"
    return IdentifyOut(match=candidate_out(result.match) if result.match else None,
                       candidates=[candidate_out(c) for c in result.candidates],
                       threshold=result.threshold, rule=result.rule, searched=result.searched,
                       model_id=result.model_id, liveness=challenge_id is not None,
                       face=face_out(result.face),
                       quality=quality_out(result.quality))
