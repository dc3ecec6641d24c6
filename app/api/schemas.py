"""Request and response schemas. A response never carries an embedding."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

MAX_OFFSET = 1_000_000_000


class ErrorDetail(BaseModel):
    code: str = Field(examples=["no_face"])
    message: str = Field(examples=["no face was found in the photo"])


class ErrorOut(BaseModel):
    error: ErrorDetail


class FaceOut(BaseModel):
    box: tuple[int, int, int, int] = Field(description="x, y, width, height in the upright photo's pixels",
                                           examples=[[61, 72, 108, 108]])
    score: float = Field(description="detector confidence", examples=[1.83])


class QualityOut(BaseModel):
    """How fit the face is to be a reference (an enrollment must pass FACEGATE_QUALITY_*; verify and identify
    only report it)."""

    face_size: int = Field(description="the smaller side of the face's box, in pixels", examples=[142])
    sharpness: float = Field(description="variance of the Laplacian of the face, warped to 128 px grey; a "
                                         "blurred face scores low", examples=[96.4])
    yaw: float = Field(description="how far the head is turned, in degrees (0: frontal), estimated from the "
                                   "landmarks", examples=[8.5])
    roll: float = Field(description="the tilt of the eye line, in degrees", examples=[-2.1])
    brightness: float = Field(description="mean grey level of the face, 0-255", examples=[121.0])
    contrast: float = Field(description="standard deviation of the face's grey levels", examples=[48.7])


class QualityCheckOut(BaseModel):
    check: str = Field(description="face_size, sharpness, yaw, roll or brightness", examples=["sharpness"])
    bound: str = Field(description="min: the value must be at least the limit; max: at most", examples=["min"])
    limit: float = Field(examples=[20.0])
    value: float = Field(description="yaw and roll as magnitudes", examples=[96.4])
    passed: bool
    text: str = Field(description="the measurement and the limit, in words",
                      examples=["sharpness 96 (at least 20)"])


class EnrollCheckOut(BaseModel):
    """What enrollment would say of the photo, without storing anything."""

    face: FaceOut = Field(description="the face the service would enroll")
    quality: QualityOut
    passes: bool = Field(description="every check passes: /enroll would accept the photo without force")
    checks: list[QualityCheckOut] = Field(description="each check of FACEGATE_QUALITY_*, passed or not; empty "
                                                      "when FACEGATE_ENROLL_QUALITY=false")


class MeOut(BaseModel):
    auth: bool = Field(description="false when the service runs without keys (then the scope is admin)")
    key_id: str | None = Field(examples=["3f9c2a1b7d04"])
    scope: str = Field(description="admin, verify or metrics", examples=["admin"])


class EnrollOut(BaseModel):
    employee_id: str = Field(examples=["e-1042"])
    name: str | None = Field(examples=["Ada Lovelace"])
    replaced: bool = Field(description="the employee existed and these photos replaced their references")
    enrolled_at: datetime
    model_id: str = Field(examples=["sha256:3f2a9c0d4e5b6a71"])
    references: int = Field(description="the photos enrolled in this sitting, fused into one template", examples=[1])
    face: FaceOut = Field(description="the first photo's face")
    quality: QualityOut = Field(description="the first photo's quality")


class ReferenceAddedOut(BaseModel):
    employee_id: str = Field(examples=["e-1042"])
    reference: int = Field(description="the new reference's number (0 is the enrollment's photo)", examples=[1])
    references: int = Field(description="how many references the employee now has", examples=[2])
    enrolled_at: datetime
    model_id: str
    face: FaceOut
    quality: QualityOut


class ChallengeOut(BaseModel):
    challenge_id: str = Field(description="send it with the burst, as the form field challenge_id")
    prompts: list[Literal["left", "right"]] = Field(description="the turns to make, in order: the person's own "
                                                                "left and right", examples=[["left", "right"]])
    expires_at: datetime = Field(description="the burst must reach the server before this")
    min_frames: int = Field(description="the fewest frames that can show the turns", examples=[6])
    max_frames: int = Field(description="the most frames a burst may have (FACEGATE_LIVENESS_MAX_FRAMES)",
                            examples=[30])


class VerifyOut(BaseModel):
    employee_id: str = Field(examples=["e-1042"])
    match: bool = Field(description="score >= threshold (rule as-norm; and distance <= the request's threshold, "
                                    "if it gave one), or distance <= threshold (rule distance)")
    distance: float = Field(description="Euclidean distance between unit embeddings, 0 (identical) to 2",
                            examples=[0.62])
    threshold: float = Field(description="in the rule's units: the score to reach (as-norm) or the distance not to "
                                         "exceed (distance), calibrated for a template fused from this many "
                                         "references; or, rule distance, the request's stricter one",
                             examples=[3.9])
    score: float | None = Field(description="the AS-norm score against the model's cohort (rule as-norm); null "
                                            "otherwise", examples=[8.1])
    rule: str = Field(description="what decided: as-norm or distance", examples=["as-norm"])
    liveness: bool = Field(description="the frames answered a head-turn challenge", examples=[False])
    references: int = Field(description="the employee's references, fused into the template the photo was "
                                        "compared with", examples=[1])
    model_id: str
    face: FaceOut = Field(description="the face that was compared")
    quality: QualityOut


class CandidateOut(BaseModel):
    employee_id: str
    name: str | None
    distance: float = Field(description="to the employee's template (their references fused)")
    score: float | None = Field(description="the AS-norm score that ranks and decides when the model has a "
                                            "cohort (higher is more alike); null otherwise")


class IdentifyOut(BaseModel):
    match: CandidateOut | None = Field(description="the nearest employee, or null when even the nearest is "
                                                   "farther than the threshold (a stranger)")
    candidates: list[CandidateOut] = Field(description="up to top_k best employees, best first")
    threshold: float = Field(description="in the rule's units: the score to reach (as-norm) or the distance not "
                                         "to exceed (distance)")
    rule: str = Field(description="what ranks and decides: as-norm (the model's cohort) or distance",
                      examples=["as-norm"])
    liveness: bool = Field(description="the frames answered a head-turn challenge", examples=[False])
    searched: int = Field(description="the templates searched: the whole gallery, or the members of the key's "
                                      "(or the request's) groups; N of the 1:N rule", examples=[60])
    model_id: str
    face: FaceOut = Field(description="the face that was searched for")
    quality: QualityOut


class ReferenceOut(BaseModel):
    reference: int = Field(description="its number: 0 is the enrollment's photo, 1 and up those added to it")
    enrolled_at: datetime


class EmployeeOut(BaseModel):
    employee_id: str
    name: str | None
    enrolled_at: datetime | None = Field(description="when the first of the current reference photos was enrolled")
    updated_at: datetime
    model_id: str | None = Field(description="model that made the reference embedding")
    current_model: bool = Field(description="false when the reference was made by another model and must be "
                                            "enrolled again before it can be compared")
    references: list[ReferenceOut] = Field(description="the employee's references (of the model that made the "
                                                       "first one); a decision uses the nearest")
    groups: list[str] = Field(description="the groups the employee belongs to", examples=[["lab-3"]])


class EmployeePage(BaseModel):
    items: list[EmployeeOut]
    total: int
    offset: int
    limit: int


class AuditOut(BaseModel):
    at: datetime
    key_id: str | None = Field(description="the key that asked; null when keys are off or for bulk enrollment")
    action: str = Field(examples=["verify"])
    employee_id: str | None
    decision: str = Field(description="enrolled, replaced, deleted, match, no_match, unknown, or the error code of "
                                      "a refusal", examples=["match"])
    distance: float | None
    threshold: float | None = Field(description="the decision's, in its rule's units")
    score: float | None = Field(description="identify: the best match's AS-norm score")
    rule: str | None = Field(description="identify: as-norm or distance")
    groups: str | None = Field(description="verify and identify: the groups the decision was confined to (the "
                                           "key's, or the request's), comma-separated; null for the whole gallery")
    liveness: str | None = Field(description="verify and identify with a head-turn challenge: passed, or the check "
                                             "that failed (steady, continuity, turns, depth, relief, shape); null "
                                             "without one")
    request_id: str | None = Field(description="the request's X-Request-ID: its lines in the logs")
    count: int = Field(description="the events the row stands for: more than one for the refusals of anonymous "
                                   "clients, which are counted per source and window", examples=[1])
    source: str | None = Field(description="the client's address, on counted refusals")


class AuditPage(BaseModel):
    items: list[AuditOut] = Field(description="newest first")
    total: int
    offset: int
    limit: int


class GroupOut(BaseModel):
    group_id: str = Field(examples=["lab-3"])
    name: str | None = Field(examples=["Lab 3, second floor"])
    members: int = Field(description="employees in the group", examples=[60])
    created_at: datetime
    updated_at: datetime


class GroupPage(BaseModel):
    items: list[GroupOut]
    total: int
    offset: int
    limit: int


class MembersIn(BaseModel):
    employee_ids: list[str] = Field(description="employees to add (at most FACEGATE_MAX_GROUP_BULK)",
                                    examples=[["e-1042", "e-1043"]])


class MembersAddedOut(BaseModel):
    group_id: str
    added: int = Field(description="employees who joined now")
    already: int = Field(description="employees who were members already")
    not_found: list[str] = Field(description="ids with no employee: nothing was done for them")


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: str
    model_id: str
    device: str
    templates: int = Field(description="templates of the current model in the search index: one per employee, "
                                       "their references fused")
    stale_templates: int = Field(description="templates made by another model; never compared")
