"""API keys: create, list and revoke them; look one up for a request. The commands are app.cli.keys.

A key reads `fg_<key id>_<secret>`. The key id is public (logs and the audit trail name it); only the
SHA-256 of the secret is stored, so a database dump holds no usable key. The secret is 256 random bits,
which is why a plain, fast hash is enough: there is nothing to guess. Scopes:
- `admin`: enroll, replace, delete, and list or read employees;
- `verify`: verify and identify, nothing else;
- `metrics`: read GET /metrics, nothing else (for Prometheus; an admin key may read them too).

A verify key may be bound to groups (a door's key: `create --scope verify --group lab-3`): it then verifies
and identifies only their members, and answers for anyone else as for an unknown employee. Deleting a group
unbinds it from its keys, which stay bound to what is left, perhaps nothing: a bound key never falls back to
the whole gallery.

A request sends its key in X-API-Key, or as `Authorization: Bearer <key>` (what Prometheus sends).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as DBTimeout
from sqlalchemy.orm import Session, sessionmaker

from app.core.identifiers import NAME_RULE, is_name
from app.gallery import groups as gallery_groups
from app.gallery.models import ApiKey, utcnow

log = logging.getLogger(__name__)

SCOPES = ("admin", "verify", "metrics")
PREFIX = "fg"


MAX_KEY_GROUPS = 64


def audited(groups: Collection[str] | None) -> str | None:
    """Groups as the audit trail and the lockout's rows keep them: comma-separated, sorted; None for all."""
    return None if groups is None else ",".join(sorted(groups))


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key's id and scope (both None when auth is off), and the groups it is bound to
    (None: it reaches the whole gallery)."""

    key_id: str | None
    scope: str | None
    groups: frozenset[str] | None = None
    liveness: bool = False  # the key must answer a head-turn challenge at /verify and /identify


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(session: Session, scope: str, name: str | None = None, groups: list[str] = (),
               liveness: bool = False) -> tuple[str, ApiKey]:
    """A new key: returns the full key (shown once, never stored) and its row. `groups`: bind a verify key to
    these (existing) groups. `liveness`: the key must answer a head-turn challenge at /verify and /identify."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}")
    if name is not None and not is_name(name):
        raise ValueError(NAME_RULE)
    if groups and scope != "verify":
        raise ValueError("only a verify key can be bound to groups (a door's key)")
    if liveness and scope == "metrics":
        raise ValueError("liveness applies to keys that verify (scope verify or admin)")
    if len(set(groups)) > MAX_KEY_GROUPS:
        raise ValueError(f"a key can be bound to at most {MAX_KEY_GROUPS} groups")
    found = [gallery_groups.get_group(session=session, group_id=g) for g in dict.fromkeys(groups)]
    missing = [g for g, group in zip(dict.fromkeys(groups), found, strict=True) if group is None]
    if missing:
        raise ValueError(f"no such group: {', '.join(missing)}")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    row = ApiKey(key_id=key_id, secret_hash=_hash(secret), scope=scope, name=name, liveness=liveness)
    session.add(row)
    session.flush()
    if groups:
        gallery_groups.bind_key(session=session, key=row, groups=found)
    session.commit()
    return f"{PREFIX}_{key_id}_{secret}", row


def groups_of_keys(session: Session, rows: list[ApiKey]) -> dict[str, list[str] | None]:
    """key id -> the groups it is bound to (None for an unbound key)."""
    bound = gallery_groups.key_groups(session=session, key_pks=[row.id for row in rows if row.bound])
    return {row.key_id: bound[row.id] if row.bound else None for row in rows}


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def revoke_key(session: Session, key_id: str) -> bool:
    row = session.scalars(select(ApiKey).where(ApiKey.key_id == key_id)).one_or_none()
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    session.commit()
    return True


# The exact shape create_key makes: anything else is refused before any lookup or cache entry.
KEY_SHAPE = re.compile(rf"{PREFIX}_([0-9a-f]{{12}})_([A-Za-z0-9_-]{{43}})")


def parse(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    match = KEY_SHAPE.fullmatch(key)
    return (match[1], match[2]) if match else None


# A key's cache entry: (read at, secret hash, scope, groups, liveness); the hash is None for an unknown or revoked key.
Entry = tuple[float, str | None, str | None, frozenset[str] | None, bool]


class KeyStore:
    """Checks request keys against the database, with a short cache so a request costs no query.

    A revocation, and a change of the key's groups, takes effect within `ttl` seconds on every replica.

    While the database is away, a key read valid within the last `grace` seconds stays valid (a door keeps
    identifying from the in-memory index through a short outage); any other key is answered 503 by the gate,
    since an unknown key cannot be told from a valid one then. The price: a revocation committed in the `ttl`
    before an outage may wait for the database to come back (no revocation can be written during one). As
    soon as the database answers, the next look-up applies it. `grace` 0 turns this off.
    """

    def __init__(self, sessions: sessionmaker[Session], ttl: float = 5.0, max_entries: int = 10_000,
                 grace: float = 0.0) -> None:
        self.sessions, self.ttl, self.max_entries, self.grace = sessions, ttl, max_entries, grace
        # key id -> its Entry, least recently used first; unknown ids are cached too (hash None), so a flood of
        # made-up ids costs one query each at most once per ttl and never grows the cache past max_entries.
        self._cache: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._cache)

    def check_cached(self, key: str) -> tuple[bool, Caller | None]:
        """(answered, caller) from what is cached, without touching the database: cheap enough for the event loop.
        Not answered when the key's entry is missing or older than `ttl`: then `check` (in a thread) must read it."""
        parsed = parse(key)
        if parsed is None:
            return True, None
        key_id, secret = parsed
        with self._lock:
            cached = self._cache.get(key_id)
            if cached is None or time.monotonic() - cached[0] > self.ttl:
                return False, None
            self._cache.move_to_end(key_id)
        return True, self._caller(cached, key_id, secret)

    def check(self, key: str) -> Caller | None:
        """The caller a presented key belongs to, or None if it is malformed, unknown or revoked."""
        parsed = parse(key)
        if parsed is None:
            return None
        key_id, secret = parsed
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key_id)
            if cached is not None:
                self._cache.move_to_end(key_id)
        if cached is None or now - cached[0] > self.ttl:
            try:
                cached = self._read(key_id, now)
            except (OperationalError, DBTimeout):  # the database is away
                if cached is None or cached[1] is None or now - cached[0] > self.grace:
                    raise
                log.debug("key %s: the database is away; trusted from %.0f s ago (FACEGATE_KEY_GRACE_SECONDS)",
                          key_id, now - cached[0])
                return self._caller(cached, key_id, secret)
            with self._lock:
                self._cache[key_id] = cached
                self._cache.move_to_end(key_id)
                while len(self._cache) > self.max_entries:
                    self._cache.popitem(last=False)
        return self._caller(cached, key_id, secret)

    def _read(self, key_id: str, now: float) -> Entry:
        with self.sessions() as session:
            row = session.scalars(select(ApiKey).where(ApiKey.key_id == key_id)).one_or_none()
            live = row is not None and row.revoked_at is None
            groups = frozenset(groups_of_keys(session, [row])[key_id] or ()) if live and row.bound else None
        return (now, row.secret_hash if live else None, row.scope if live else None, groups, live and row.liveness)

    @staticmethod
    def _caller(cached: Entry, key_id: str, secret: str) -> Caller | None:
        _, secret_hash, scope, groups, liveness = cached
        if secret_hash is None or not hmac.compare_digest(secret_hash, _hash(secret)):
            return None
        return Caller(key_id, scope, groups, liveness)

