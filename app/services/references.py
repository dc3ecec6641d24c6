"""The encrypted reference store: each employee's enrollment photo, kept so that a new model can embed it again
(app.cli.reembed) without asking the employee for a new one. Off by default: privacy stays the default.

    python -m app.cli.references new-key        # prints a new key (base64, 32 bytes)
    python -m app.cli.references rotate         # re-encrypts every photo with the first key

Photos are sealed with AES-256-GCM (cryptography's AESGCM): a random 96-bit nonce per photo, and the employee
id as associated data, so a sealed photo moved to another employee's row no longer opens. The keys come from
FACEGATE_REFERENCE_KEYS or FACEGATE_REFERENCE_KEYS_FILE: base64 keys separated by commas or new lines, the
first one seals, every one opens. Each row names its key by an id derived from the key (never the key).

Rotation: put the new key first and keep the old one after it, restart (or roll) the replicas, run `rotate`,
then remove the old key. A photo is deleted with its employee (the foreign key cascades); on SQLite the
freed pages are overwritten too (secure_delete, app.gallery.db).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.gallery.models import Employee, ReferencePhoto

KEY_BYTES = 32
NONCE_BYTES = 12


class ReferenceKeyError(ValueError):
    """The configured keys cannot be used, or a stored photo was sealed with a key that is not configured."""


def key_id(key: bytes) -> str:
    """A public name for a key: the first 16 hex digits of a hash of it, domain-separated."""
    return hashlib.sha256(b"facegate reference key\0" + key).hexdigest()[:16]


def parse_keys(text: str) -> list[bytes]:
    keys = []
    for item in text.replace("\n", ",").split(","):
        if not item.strip():
            continue
        try:
            key = base64.b64decode(item.strip(), validate=True)
        except binascii.Error as exc:
            raise ReferenceKeyError("a reference key is not valid base64") from exc
        if len(key) != KEY_BYTES:
            raise ReferenceKeyError(f"a reference key must be {KEY_BYTES} bytes (base64 of 32 random bytes); one "
                                    f"is {len(key)}")
        keys.append(key)
    if not keys:
        raise ReferenceKeyError("no reference key is configured")
    return keys


@dataclass(frozen=True)
class Sealed:
    key_id: str
    nonce: bytes
    ciphertext: bytes


class ReferenceCipher:
    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ReferenceKeyError("no reference key is configured")
        self.primary = key_id(keys[0])
        self._ciphers = {key_id(key): AESGCM(key) for key in keys}

    def seal(self, photo: bytes, employee_id: str) -> Sealed:
        nonce = os.urandom(NONCE_BYTES)
        return Sealed(self.primary, nonce, self._ciphers[self.primary].encrypt(nonce, photo, employee_id.encode()))

    def open(self, row: ReferencePhoto, employee_id: str) -> bytes:
        cipher = self._ciphers.get(row.key_id)
        if cipher is None:
            raise ReferenceKeyError(f"{employee_id!r}'s photo was sealed with key {row.key_id}, which is not "
                                    "configured")
        try:
            return cipher.decrypt(row.nonce, row.ciphertext, employee_id.encode())
        except InvalidTag as exc:
            raise ReferenceKeyError(f"{employee_id!r}'s photo does not open: altered, or moved from another "
                                    "employee") from exc


def new_key() -> str:
    """A new random key, base64, for FACEGATE_REFERENCE_KEYS."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def load_cipher(keys: SecretStr | None, keys_file: Path | None) -> ReferenceCipher | None:
    """The cipher of the configured keys (the setting, else the file), or None when none are configured."""
    if keys is None and keys_file is None:
        return None
    return ReferenceCipher(parse_keys(keys.get_secret_value() if keys is not None else keys_file.read_text()))


def rotate(session: Session, cipher: ReferenceCipher, batch: int = 100) -> int:
    """Seal again, with the first key, every photo sealed with another; returns how many."""
    rotated = 0
    while True:
        rows = session.execute(
            select(ReferencePhoto, Employee.employee_id).join(Employee, ReferencePhoto.employee_pk == Employee.id)
            .where(ReferencePhoto.key_id != cipher.primary).limit(batch)).all()
        if not rows:
            return rotated
        for row, employee_id in rows:
            sealed = cipher.seal(cipher.open(row, employee_id), employee_id)
            row.key_id, row.nonce, row.ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext
        session.commit()
        rotated += len(rows)
