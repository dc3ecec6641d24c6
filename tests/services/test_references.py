"""The reference store's encryption: what opens, what does not, key rotation, and keys refused at start-up."""

from __future__ import annotations

import base64
import os

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from app.cli.references import main
from app.core.config import Settings
from app.gallery import db, repository
from app.gallery.models import ReferencePhoto
from app.services.references import ReferenceCipher, ReferenceKeyError, key_id, load_cipher, parse_keys, rotate

OLD, NEW = os.urandom(32), os.urandom(32)


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def row_of(sealed) -> ReferencePhoto:  # noqa: ANN001
    return ReferencePhoto(key_id=sealed.key_id, nonce=sealed.nonce, ciphertext=sealed.ciphertext)


def test_a_sealed_photo_opens_for_its_employee_only():
    cipher = ReferenceCipher([OLD])
    sealed = cipher.seal(b"photo bytes", "e-1")
    assert b"photo bytes" not in sealed.ciphertext and len(sealed.nonce) == 12
    assert cipher.open(row_of(sealed), "e-1") == b"photo bytes"
    with pytest.raises(ReferenceKeyError, match="moved from another employee"):
        cipher.open(row_of(sealed), "e-2")  # the employee id is authenticated with it
    tampered = row_of(sealed)
    tampered.ciphertext = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    with pytest.raises(ReferenceKeyError):
        cipher.open(tampered, "e-1")
    assert cipher.seal(b"photo bytes", "e-1").nonce != sealed.nonce  # a fresh nonce every time
    with pytest.raises(ReferenceKeyError, match="not configured"):
        ReferenceCipher([NEW]).open(row_of(sealed), "e-1")


def test_rotation_seals_every_photo_again_with_the_first_key(sqlite_url):
    db.migrate(sqlite_url)
    engine = db.make_engine(sqlite_url)
    sessions = db.make_sessionmaker(engine)
    old = ReferenceCipher([OLD])
    with sessions() as session:
        for employee_id in ("a", "b", "c"):
            employee = repository.add_employee(session=session, employee_id=employee_id, name=None)
            sealed = old.seal(employee_id.encode() * 10, employee_id)
            repository.set_reference(session=session, employee=employee, key_id=sealed.key_id, nonce=sealed.nonce,
                                     ciphertext=sealed.ciphertext)
        session.commit()
    both = ReferenceCipher([NEW, OLD])
    with sessions() as session:
        assert rotate(session, both, batch=2) == 3
        assert rotate(session, both) == 0  # twice is harmless
    new_only = ReferenceCipher([NEW])
    with sessions() as session:
        rows = session.scalars(select(ReferencePhoto)).all()
        assert {row.key_id for row in rows} == {key_id(NEW)}
        assert sorted(new_only.open(row, row.employee.employee_id) for row in rows) == [b"a" * 10, b"b" * 10,
                                                                                      b"c" * 10]
    engine.dispose()


def test_the_cli_rotates_with_the_configured_keys(sqlite_url, monkeypatch, capsys):
    db.migrate(sqlite_url)
    monkeypatch.setenv("FACEGATE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("FACEGATE_REFERENCE_KEYS", f"{b64(NEW)},{b64(OLD)}")
    assert main(["rotate"]) == 0
    assert f"with key {key_id(NEW)}" in capsys.readouterr().err
    assert main(["new-key"]) == 0
    assert len(parse_keys(capsys.readouterr().out)) == 1


@pytest.mark.parametrize("keys", ["", "not base64!", b64(b"short"), b64(os.urandom(32)) + ",@@"])
def test_unusable_keys_are_refused_at_start_up(keys, sqlite_url):
    from app.runtime import start

    with pytest.raises((ValidationError, ReferenceKeyError)):
        start(Settings(database_url=sqlite_url, reference_store=True, reference_keys=keys or None))


def test_keys_may_come_from_a_file(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"{b64(NEW)}\n{b64(OLD)}\n")
    settings = Settings(reference_store=True, reference_keys_file=path)
    cipher = load_cipher(settings.references.keys, settings.references.keys_file)
    assert cipher.primary == key_id(NEW)
    assert load_cipher(None, None) is None
