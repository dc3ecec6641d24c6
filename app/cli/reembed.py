"""Move the gallery to a new model without re-enrollment: embed every stored reference photo with it, beside
the old templates, then switch every replica to it at once.

    python -m app.cli.reembed --model model/weights/facegate-mfn.pt [--batch 32] [--allow-stale]

1. The gallery records the new model as the next one. Replicas that have it loaded
   (FACEGATE_NEXT_MODEL_PATH) make templates of both models for every enrollment from then on.
2. Every stored photo (the reference store, app.services.references: one per reference of each employee)
   whose reference has no template of the new model gets one, a batch at a time, while the old model keeps
   serving. Each template commits on its own, so an interrupted run loses nothing, and the next run carries on
   where it stopped; a run after the switch has nothing to do. A template is only kept if the photo it was
   made from is still the reference's (a replace during the run is embedded again).
3. When every employee has a template of the new model, one transaction makes it the active model and
   announces it on the change feed; every replica rebuilds its index from the new templates and swaps model
   and index together, so no request ever compares templates of two models.

Employees without a stored photo (enrolled with the store off, or before it was on) cannot be re-embedded:
they are listed, and block the switch unless --allow-stale, after which they must enroll again (/verify
answers 409 stale_template for them until then). An added reference (POST /employees/{id}/references) without a
stored photo is not carried over: after the switch its employee is decided on the references that were.
SIGINT (Ctrl-C) or SIGTERM stops it after the photo in hand: what is embedded is committed, and the next run
carries on. Exit status: 0 switched (or already active), 3 not switched, 130 or 143 stopped by SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.cli.common import Progress, Stop, gallery, graceful_stop
from app.core.config import Settings
from app.gallery import repository
from app.services.recognition import face_chips
from app.services.references import ReferenceCipher, ReferenceKeyError, load_cipher
from model.faces.embedder import Embedder
from model.faces.errors import FaceError
from model.faces.pipeline import FacePipeline

log = logging.getLogger(__name__)


@dataclass
class Report:
    model_id: str
    embedded: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # employee id -> why its photo gave no template
    without_photo: list[str] = field(default_factory=list)
    switched: bool = False
    already_active: bool = False
    seconds: float = 0.0
    stopped_by: str | None = None  # the signal that stopped the run before it finished


@dataclass(frozen=True)
class StoredPhoto:
    employee_pk: int
    reference_id: int
    slot: int
    employee_id: str
    photo: bytes


def embed_batch(rows: list[StoredPhoto], *, settings: Settings, embedder: Embedder, pipeline: FacePipeline,
                report: Report) -> list[tuple[StoredPhoto, np.ndarray]]:
    """Each photo with the new model's vector; a photo that the new model's pipeline refuses is reported."""
    chips, kept = [], []
    for row in rows:
        try:
            _, chip, _ = face_chips(row.photo, settings=settings, pipeline=pipeline, views=embedder.views.to_align)
        except FaceError as exc:
            report.failed[_named(row.employee_id, row.slot)] = f"{exc.code}: {exc.message}"
            continue
        chips.append(chip)
        kept.append(row)
    if not kept:
        return []
    return list(zip(kept, embedder.embed(np.stack(chips)), strict=True))


def _named(employee_id: str, slot: int) -> str:
    """How the report names a photo: the employee id, and the reference after the first."""
    return employee_id if slot == 0 else f"{employee_id} (reference {slot})"


def reembed(settings: Settings, model_path: Path, *, batch: int = 32, allow_stale: bool = False,
            progress: bool = False, stop: Stop | None = None) -> Report:
    """Embed every stored photo that has no template of the model at `model_path`, then switch the gallery to
    it if every employee has one (or `allow_stale`). A `stop` that is set ends the run after the photo in hand,
    without switching."""
    started = time.perf_counter()
    stop = Stop() if stop is None else stop
    embedder = Embedder.load(model_path, settings.model.device, settings.model.augment, settings.model.precision)
    report = Report(embedder.model_id)
    with gallery(settings) as sessions:
        with sessions() as session:
            active = repository.active_model(session=session)
            if active is None:
                raise SystemExit("no replica has served this gallery yet: there is no model to move from")
            if active == embedder.model_id:
                report.already_active = True
                return report
            repository.set_next_model(session=session, model_id=embedder.model_id)
            session.commit()
        cipher = load_cipher(settings.references.keys, settings.references.keys_file)
        pipeline = FacePipeline(settings.pipeline_config(embedder.input_size, embedder.card.preprocess))
        for _ in range(3):  # enrollments during a pass can leave employees to embed: look again before switching
            _embed_missing(sessions, cipher, settings=settings, embedder=embedder, pipeline=pipeline, batch=batch,
                           report=report, progress=progress, stop=stop)
            if stop.requested:
                report.stopped_by = stop.name
                break
            with sessions() as session:
                report.without_photo = repository.without_template_or_photo(session=session,
                                                                            model_id=embedder.model_id)
                if (report.without_photo or report.failed) and not allow_stale:
                    break
                if repository.switch_model(session=session, model_id=embedder.model_id,
                                           require_complete=not allow_stale):
                    session.commit()
                    report.switched = True
                    break
                session.rollback()
    report.seconds = time.perf_counter() - started
    return report


def _embed_missing(sessions: sessionmaker[Session], cipher: ReferenceCipher | None, *, settings: Settings,
                   embedder: Embedder, pipeline: FacePipeline, batch: int, report: Report, progress: bool,
                   stop: Stop) -> None:
    if cipher is None:
        return  # no store: nothing can be re-embedded
    with sessions() as session:
        total = repository.count_references_to_embed(session=session, model_id=embedder.model_id)
    bar = Progress(total, progress, made="embedded")
    after, done = 0, 0
    while not stop.requested:
        with sessions() as session:
            rows = repository.references_to_embed(session=session, model_id=embedder.model_id, after=after,
                                                  limit=batch)
            if not rows:
                break
            after = rows[-1][0].id
            photos = []
            for reference, employee_id in rows:
                try:
                    photos.append(StoredPhoto(reference.employee_pk, reference.id, reference.slot, employee_id,
                                              cipher.open(reference, employee_id)))
                except ReferenceKeyError as exc:
                    report.failed[_named(employee_id, reference.slot)] = str(exc)
        for row, vector in embed_batch(photos, settings=settings, embedder=embedder, pipeline=pipeline,
                                       report=report):
            with sessions() as session:
                try:
                    if repository.add_template(session=session, employee_pk=row.employee_pk,
                                               reference_id=row.reference_id, slot=row.slot, vector=vector,
                                               model_id=embedder.model_id):
                        session.commit()
                        report.embedded += 1
                    else:
                        session.rollback()  # replaced or deleted meanwhile: the next pass sees the new photo
                except IntegrityError:  # the employee was deleted meanwhile
                    session.rollback()
            done += 1
            bar.update(done, report.embedded, len(report.failed))
            if stop.requested:
                break
        log.info("re-embedded %d of %d", done, total)
    bar.update(done, report.embedded, len(report.failed), final=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="the new model's weights (its card beside them)")
    parser.add_argument("--batch", type=int, default=32, help="photos per forward pass")
    parser.add_argument("--allow-stale", action="store_true",
                        help="switch even though some employees have no template of the new model")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with graceful_stop() as stop:
        report = reembed(Settings(), args.model, batch=args.batch, allow_stale=args.allow_stale,
                         progress=not args.no_progress, stop=stop)
    out = sys.stdout
    if report.already_active:
        out.write(f"{report.model_id} is already the active model: nothing to do\n")
        return 0
    rate = report.embedded / report.seconds if report.seconds else 0.0
    out.write(f"embedded {report.embedded} reference photos with {report.model_id} in {report.seconds:.1f} s "
              f"({rate:.1f} photos/s)\n")
    for employee_id, why in sorted(report.failed.items()):
        out.write(f"failed\t{employee_id}\t{why}\n")
    for employee_id in report.without_photo:
        out.write(f"re-enroll\t{employee_id}\tno stored photo\n")
    if report.stopped_by:
        out.write(f"stopped by {report.stopped_by}: the {report.embedded} templates made are committed and the "
                  "gallery still serves the old model; run the same command again to carry on\n")
        return stop.exit_status
    if report.switched:
        out.write(f"switched: every replica now serves {report.model_id}"
                  + (f"; {len(report.without_photo)} employees must enroll again\n" if report.without_photo
                     else "\n"))
        return 0
    out.write(f"not switched: {len(report.without_photo)} employees have no stored photo and {len(report.failed)} "
              "failed; re-enroll them and run again, or pass --allow-stale\n")
    return 3


if __name__ == "__main__":
    sys.exit(main())
