"""app.cli.reembed of 2,000 stored reference photos: photos per second on this machine.

    python -m benchmarks.reembed [--photos 2000] [--model model/weights/facegate-resnet.pt] [--batch 32]

The gallery (SQLite, in a temporary folder) holds the first photo of each of 2,000 LFW people from
../shared/data, sealed in the reference store, and names another model as the active one: the state just
before an upgrade. The figure is app.cli.reembed's own, from the first photo read to the switch: decrypt, decode,
detect, align, embed (batched) and commit a template per employee.
"""

from __future__ import annotations

import argparse
import base64
import os
import tempfile
from pathlib import Path

from app.cli.reembed import reembed
from app.core.config import Settings
from app.gallery import db, repository
from app.services.references import ReferenceCipher, load_cipher
from benchmarks.bulk import unpack_people
from benchmarks.common import machine
from model.faces.config import DEFAULT_MODEL


def seed(database_url: str, photos: list[Path], cipher: ReferenceCipher) -> None:
    db.migrate(database_url)
    engine = db.make_engine(database_url)
    with db.make_sessionmaker(engine)() as session:
        repository.adopt_model(session=session, model_id="sha256:the-previous-model")
        for path in photos:
            employee = repository.add_employee(session=session, employee_id=path.parent.name, name=None)
            sealed = cipher.seal(path.read_bytes(), employee.employee_id)
            repository.set_reference(session=session, employee=employee, key_id=sealed.key_id, nonce=sealed.nonce,
                                     ciphertext=sealed.ciphertext)
        session.commit()
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    key = base64.b64encode(os.urandom(32)).decode()
    with tempfile.TemporaryDirectory() as tmp:
        photos = unpack_people(Path(tmp) / "people", args.photos)
        url = f"sqlite:///{tmp}/gallery.db"
        settings = Settings(database_url=url, reference_store=True, reference_keys=key)
        seed(url, photos, load_cipher(settings.references.keys, settings.references.keys_file))
        print(f"machine: {machine()}")
        print(f"settings: {len(photos)} LFW photos (250x250) in the reference store, SQLite, to {args.model.name}, "
              f"batch {args.batch}")
        report = reembed(settings, args.model, batch=args.batch, allow_stale=True)
        print(f"re-embedded {report.embedded} photos in {report.seconds:.1f} s: "
              f"{report.embedded / report.seconds:.1f} photos/s; {len(report.failed)} without a usable face; "
              f"switched: {report.switched}")


if __name__ == "__main__":
    main()
