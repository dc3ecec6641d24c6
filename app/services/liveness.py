"""Head-turn challenges: issued to a key, stored so that any replica can check the answer, redeemed once.

A challenge is 2 or 3 turns, alternating, the first one left or right at random: every challenge asks for both
ways, so two photos of the person, one per way, cannot answer it without a frontal one between them, and a
replayed recording answers only the challenge it was made for. The burst that answers it is checked by
model.faces.liveness (RecognitionService.live_burst); this module owns the challenge's life.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import ChallengeExpired, ChallengeNotFound, ChallengeUsed, LivenessFailed, LivenessRequired
from app.gallery import challenges
from app.gallery.models import utcnow
from app.services.audit import AuditEntry
from app.services.conflicts import retried
from app.services.keys import Caller
from model.faces.liveness import Prompt, fewest_frames

_random = secrets.SystemRandom()


@dataclass(frozen=True)
class Challenge:
    challenge_id: str
    prompts: tuple[Prompt, ...]
    expires_at: datetime
    min_frames: int
    max_frames: int


def random_prompts() -> tuple[Prompt, ...]:
    first = _random.choice((Prompt.LEFT, Prompt.RIGHT))
    other = Prompt.RIGHT if first is Prompt.LEFT else Prompt.LEFT
    return (first, other, first)[:_random.choice((2, 3))]


class Liveness:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings.liveness

    def required_for(self, caller: Caller) -> bool:
        """Whether the caller must answer a challenge: its key says so, or every verify key must."""
        return caller.liveness or (self.settings.required and caller.scope == "verify")

    @contextmanager
    def answering(self, entry: AuditEntry, *, session: Session, caller: Caller, challenge_id: str | None
                  ) -> Iterator[tuple[Prompt, ...] | None]:
        """Around a verify or identify: the prompts its frames must answer (None: a plain request), the challenge
        redeemed first; and the outcome in its audit row (passed, or the check that failed). A caller that must
        answer a challenge and sent none is refused here, before its photos are looked at."""
        if challenge_id is None:
            if self.required_for(caller):
                raise LivenessRequired("this key must answer a liveness challenge: POST /liveness/challenge, then "
                                       "send its challenge_id with the burst of frames")
            yield None
            return
        prompts = self.redeem(session=session, caller=caller, challenge_id=challenge_id)
        try:
            yield prompts
        except LivenessFailed as exc:
            entry.liveness = exc.check
            raise
        entry.liveness = "passed"

    @retried
    def issue(self, *, session: Session, caller: Caller) -> Challenge:
        now = utcnow()
        prompts = random_prompts()
        expires_at = now + timedelta(seconds=self.settings.challenge_seconds)
        challenge_id = secrets.token_urlsafe(18)  # 24 characters, 144 random bits
        challenges.add_challenge(session=session, challenge_id=challenge_id, key_id=caller.key_id,
                                 prompts=[p.value for p in prompts], now=now, expires_at=expires_at)
        session.commit()
        return Challenge(challenge_id, prompts, expires_at, fewest_frames(len(prompts), self.settings.rules),
                         self.settings.max_frames)

    @retried
    def redeem(self, *, session: Session, caller: Caller, challenge_id: str) -> tuple[Prompt, ...]:
        """The challenge's prompts; it is used from now on, whatever the burst shows (one attempt each).
        Committed before the frames are looked at, so that a replica that redeems it at the same moment fails."""
        outcome, prompts = challenges.redeem_challenge(session=session, challenge_id=challenge_id,
                                                       key_id=caller.key_id, now=utcnow())
        session.commit()
        if outcome == "not_found":
            raise ChallengeNotFound(f"no liveness challenge {challenge_id!r} for this key; ask for one at "
                                    "POST /liveness/challenge")
        if outcome == "used":
            raise ChallengeUsed("this liveness challenge was answered already; each is good for one attempt")
        if outcome == "expired":
            raise ChallengeExpired(f"this liveness challenge expired ({self.settings.challenge_seconds} s); ask "
                                   "for a new one")
        return tuple(Prompt(p) for p in prompts)
