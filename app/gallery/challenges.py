"""Data access for liveness challenges: keyword-only functions over a Session. They flush; the caller's
transaction commits."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.gallery.models import LivenessChallenge

Redeemed = Literal["redeemed", "not_found", "used", "expired"]


def add_challenge(*, session: Session, challenge_id: str, key_id: str | None, prompts: list[str],
                  now: datetime, expires_at: datetime) -> LivenessChallenge:
    """A new challenge; the challenges expired before `now` are deleted in the same transaction, so the table
    holds only the live ones (and those used but not yet expired)."""
    session.execute(delete(LivenessChallenge).where(LivenessChallenge.expires_at < now))
    row = LivenessChallenge(challenge_id=challenge_id, key_id=key_id, prompts=",".join(prompts), created_at=now,
                            expires_at=expires_at)
    session.add(row)
    session.flush()
    return row


def redeem_challenge(*, session: Session, challenge_id: str, key_id: str | None, now: datetime
                     ) -> tuple[Redeemed, list[str]]:
    """Mark the key's challenge used, if it is unused and unexpired: one conditional UPDATE, so that of two
    replicas redeeming it at once exactly one succeeds. Returns what happened and the challenge's prompts.
    Another key's challenge is answered as one that does not exist."""
    mine = (LivenessChallenge.challenge_id == challenge_id) & (
        LivenessChallenge.key_id.is_(None) if key_id is None else LivenessChallenge.key_id == key_id)
    taken = session.execute(update(LivenessChallenge).where(mine, LivenessChallenge.used_at.is_(None),
                                                            LivenessChallenge.expires_at >= now)
                            .values(used_at=now).returning(LivenessChallenge.prompts)).scalar_one_or_none()
    if taken is not None:
        return "redeemed", taken.split(",")
    row = session.scalars(select(LivenessChallenge).where(mine)).one_or_none()
    if row is None:
        return "not_found", []
    return ("used" if row.used_at is not None else "expired"), row.prompts.split(",")
