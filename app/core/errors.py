"""The service's domain errors. Each carries its stable code and the HTTP status it answers with; the one place
that turns them into responses is app.api.errors."""

from __future__ import annotations


class DomainError(Exception):
    code = "error"
    status = 400
    retry_after: int | None = None  # seconds, sent as Retry-After: when asking again may succeed

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EmployeeNotFound(DomainError):
    code, status = "employee_not_found", 404


class GroupNotFound(DomainError):
    code, status = "group_not_found", 404


class GroupExists(DomainError):
    """A group of that id, or of one differing only in case, exists."""

    code, status = "group_exists", 409


class TooManyGroups(DomainError):
    """FACEGATE_MAX_GROUPS groups exist already, or an employee would join more than
    FACEGATE_MAX_GROUPS_PER_EMPLOYEE."""

    code, status = "too_many_groups", 409


class TooManyMembers(DomainError):
    """One call lists more employees than FACEGATE_MAX_GROUP_BULK."""

    code, status = "too_many_members", 422


class EmployeeExists(DomainError):
    code, status = "employee_exists", 409


class StaleTemplate(DomainError):
    """The employee's reference was made by another model and cannot be compared with this one's."""

    code, status = "stale_template", 409


class TooManyReferences(DomainError):
    """The employee already has FACEGATE_MAX_REFERENCES references."""

    code, status = "too_many_references", 409


class LastReference(DomainError):
    """An employee's only reference cannot be removed on its own: delete the employee instead."""

    code, status = "last_reference", 409


class ReferenceConflict(DomainError):
    """Another change to the employee's references came first, even after one more try."""

    code, status = "reference_conflict", 409


class ReferenceNotFound(DomainError):
    code, status = "reference_not_found", 404


class ThresholdTooLoose(DomainError):
    """A request asked for a threshold looser than the calibrated one: it could approve anyone."""

    code, status = "threshold_too_loose", 422


class TooManyAttempts(DomainError):
    """Too many failed verifications of one employee, or by one key, within the window (app.services.attempts)."""

    code, status = "too_many_attempts", 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyPhotos(DomainError):
    """More photos in one request than it takes: FACEGATE_MAX_REFERENCES for an enrollment,
    FACEGATE_MAX_FRAMES for a burst at /verify or /identify."""

    code, status = "too_many_photos", 422


class NotOnePerson(DomainError):
    """The photos of one enrollment, or the frames of one burst, are not all of one person."""

    code, status = "not_one_person", 422


class PoorQuality(DomainError):
    """An enrollment photo below the quality thresholds: it would fail its employee at the door for years."""

    code, status = "poor_quality", 422


class ChallengeNotFound(DomainError):
    """No liveness challenge of that id for this key (another key's is not told apart)."""

    code, status = "challenge_not_found", 404


class ChallengeUsed(DomainError):
    """The liveness challenge was answered already: each is good for one attempt."""

    code, status = "challenge_used", 409


class ChallengeExpired(DomainError):
    """The liveness challenge was not answered within FACEGATE_LIVENESS_CHALLENGE_SECONDS."""

    code, status = "challenge_expired", 409


class LivenessRequired(DomainError):
    """The key (or FACEGATE_LIVENESS_REQUIRED) requires a head-turn challenge, and the request has none."""

    code, status = "liveness_required", 403


class LivenessFailed(DomainError):
    """The burst does not answer the challenge as a live head does; `check` names the check that failed
    (model.faces.liveness.CHECKS)."""

    code, status = "liveness_failed", 422

    def __init__(self, message: str, check: str) -> None:
        super().__init__(message)
        self.check = check


class HeadersTooLarge(DomainError):
    """The request line and headers are larger than the gate accepts (app.api.guard.MAX_HEAD_BYTES)."""

    code, status = "headers_too_large", 431


class UnsupportedMediaType(DomainError):
    """The body is in a media type the endpoint does not read (it takes form fields, JSON, or no body), so none
    of it would be read."""

    code, status = "unsupported_media_type", 415


class Unauthorized(DomainError):
    """No API key, or one that is unknown or revoked."""

    code, status = "unauthorized", 401


class Forbidden(DomainError):
    """A valid API key whose scope does not cover the endpoint."""

    code, status = "forbidden", 403


class NotReady(DomainError):
    """Starting up, the database is away, or the gallery serves a model this replica has not loaded."""

    code, status = "not_ready", 503
    retry_after = 2


class AuditUnavailable(DomainError):
    """The audit trail cannot be written: the database is away and the local spool is full. No decision is
    made without its record (fail closed)."""

    code, status, retry_after = "audit_unavailable", 503, 5


class DatabaseConflict(DomainError):
    """A write met another one (a deadlock or a serialisation failure) every time it was tried."""

    code, status, retry_after = "database_conflict", 503, 1


class ModelChanging(DomainError):
    """An enrollment made by a replica whose model was just replaced as the gallery's active one: it is not
    written (its template could not be compared any more); the replica follows within a second, retry."""

    code, status = "model_changing", 503
