"""POST /liveness/challenge: a head-turn challenge for a door to answer at /verify or /identify. (Liveness of
the face in front of the camera, a presentation-attack check; the process's own is /healthz.)"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.api.deps import LivenessDep, SessionDep, VerifyCaller, fields_as_declared
from app.api.routes.faces import AUTH_ERRORS
from app.api.schemas import ChallengeOut

router = APIRouter(tags=["liveness"], dependencies=[Depends(fields_as_declared)])


@router.post("/liveness/challenge", status_code=201, response_model=ChallengeOut, responses=AUTH_ERRORS)
def challenge(liveness: LivenessDep, session: SessionDep, caller: VerifyCaller) -> ChallengeOut:
    """A random sequence of 2-3 head turns to perform in front of the camera, as a burst of frames sent to
    /verify or /identify with `challenge_id` before it expires. It is bound to the key that asked for it and
    answers one attempt. Scope: verify (or admin).

    The burst starts facing the camera (its first frames are the baseline), turns as each prompt asks (left and
    right are the person's own) and comes back to face the camera after each turn."""
    issued = liveness.issue(session=session, caller=caller)
    return ChallengeOut(challenge_id=issued.challenge_id, prompts=[p.value for p in issued.prompts],
                        expires_at=issued.expires_at, min_frames=issued.min_frames, max_frames=issued.max_frames)
