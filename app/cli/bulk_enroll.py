"""Enroll a whole folder of reference photos straight into the gallery database.

    python -m app.cli.bulk_enroll DIR                  # DIR/<employee_id>/<photo>: the first photo, by name
    python -m app.cli.bulk_enroll DIR --references 3   # and the next two as more references (folders only)
    python -m app.cli.bulk_enroll DIR --csv map.csv    # columns employee_id,path[,name][,groups]; paths relative to DIR
    python -m app.cli.bulk_enroll DIR --group lab-3    # and put everyone in group lab-3 (repeat for more)

Worker processes decode, detect and align the photos in parallel, under the service's own limits and face
policy and quality thresholds (a photo below them fails with poor_quality, unless --force); the main process
embeds their faces in batches and commits them in batches. With --references N, a folder's next photos are
added as references (POST /employees/{id}/references's write) after its first enrolls the employee. It is resumable: an
employee who already has a template of the current model is skipped, so running it again after an
interruption picks up where it stopped (`--replace` re-enrolls everyone instead). Every photo that fails
is listed at the end with its reason, the same error codes the API uses (`--failures FILE` writes them as
CSV). Running servers pick the new templates up from the gallery's change feed (app.gallery.feed).

Groups (which must exist: POST /groups): --group puts every employee of the run in that group, and a CSV's
`groups` column lists a row's own, separated by `;`. A row naming a group that does not exist fails with
group_not_found and is not enrolled. Memberships are written once the photos are, for the employees enrolled
in this run and for those skipped as enrolled before (so a run stopped in between completes them).

SIGINT (Ctrl-C) or SIGTERM stops it cleanly: the photos already embedded are committed, the rest are left for
the next run, and it exits with 130 or 143. A worker process that dies (killed for memory, say) stops it the same
way, with exit status 1.
"""

from __future__ import annotations

import argparse
import csv
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from dataclasses import replace as replace_job
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from app.cli.common import Progress, Stop, gallery, graceful_stop
from app.core.config import Settings
from app.core.errors import DomainError
from app.core.identifiers import EMPLOYEE_ID_RULE, GROUP_ID_RULE, NAME_RULE, is_employee_id, is_group_id, is_name
from app.gallery import groups, repository
from app.services.audit import AuditEntry, AuditTrail
from app.services.groups import join_group
from app.services.keys import Caller
from app.services.recognition import check_quality, face_chips, save_enrollment, save_reference
from app.services.references import ReferenceCipher, Sealed, load_cipher
from model.card.schema import ModelCard, card_path
from model.faces.children import end_with
from model.faces.config import PipelineConfig, Views
from model.faces.embedder import Embedder
from model.faces.errors import FaceError
from model.faces.pipeline import FacePipeline

log = logging.getLogger(__name__)

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Job:
    employee_id: str
    name: str | None
    path: Path
    more: tuple[Path, ...] = ()  # more reference photos (POST /employees/{id}/references), after the first
    groups: tuple[str, ...] = ()  # groups to put the employee in


@dataclass(frozen=True)
class Failure:
    employee_id: str
    path: str
    code: str
    message: str


def jobs_from_folders(root: Path, references: int = 1) -> Iterator[Job]:
    """One job per sub-folder: the folder's name is the employee id, its first photo (by name) the reference,
    and its next `references` - 1 photos more references."""
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        yield Job(folder.name, None, photos[0] if photos else folder, tuple(photos[1:references]))


def jobs_from_csv(root: Path, mapping: Path) -> Iterator[Job]:
    with mapping.open(newline="") as handle:
        for row in csv.DictReader(handle):
            groups = tuple(g.strip() for g in (row.get("groups") or "").split(";") if g.strip())
            yield Job(row["employee_id"].strip(), (row.get("name") or "").strip() or None,
                      root / row["path"].strip(), groups=groups)


# --- worker processes: photo -> aligned crop ------------------------------------------------------------

_worker: dict = {}


def _init_worker(command: int, settings: Settings, config: PipelineConfig, views: Views | None, force: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the whole process group: the main process decides
    end_with(command)  # even a command killed outright
    _worker["settings"], _worker["pipeline"], _worker["views"] = settings, FacePipeline(config), views
    _worker["force"] = force


def _crop_one(employee_id: str, path: Path) -> tuple[np.ndarray | None, Failure | None]:
    try:
        data = path.read_bytes()
        _, crop, quality = face_chips(data, settings=_worker["settings"], pipeline=_worker["pipeline"],
                                      views=_worker["views"])
        if not _worker["force"]:
            check_quality(quality, _worker["settings"])
        return crop, None
    except (FaceError, DomainError) as exc:
        return None, Failure(employee_id, str(path), exc.code, exc.message)
    except OSError as exc:
        return None, Failure(employee_id, str(path), "unreadable", str(exc))


def _crop(job: Job) -> tuple[Job, list[tuple[Path, np.ndarray]], list[Failure]]:
    """The job's photos that passed, as (path, crop), the first photo's first, and the failures. When the
    first photo fails, the employee is not enrolled and the others are not looked at."""
    if job.path.is_dir():
        return job, [], [Failure(job.employee_id, str(job.path), "no_photo", "the folder holds no photo")]
    crops, failures = [], []
    for path in (job.path, *job.more):
        crop, failure = _crop_one(job.employee_id, path)
        if failure is not None:
            failures.append(failure)
            if not crops:
                return job, [], failures
        else:
            crops.append((path, crop))
    return job, crops, failures


# --- the main process: batches of crops -> embeddings -> the database ----------------------------------

@dataclass
class Summary:
    enrolled: int
    skipped: int
    failures: list[Failure]
    seconds: float
    references: int = 0  # references added beyond the enrolled photos
    stopped_by: str | None = None  # what stopped the run before every job was done: a signal, or a worker's death


# The audit trail's caller for bulk enrollment: an operator with the database's credentials, not an API key.
OPERATOR = Caller(None, None)


def fail(failures: list[Failure], audit: AuditTrail, failure: Failure) -> None:
    failures.append(failure)
    audit.add(OPERATOR, AuditEntry("bulk_enroll", failure.employee_id, decision=failure.code))


def store(sessions, embedder: Embedder, batch: list[tuple[Job, list[tuple[Path, np.ndarray]]]],  # noqa: ANN001
          failures: list[Failure], audit: AuditTrail, cipher: ReferenceCipher | None = None,
          max_references: int = 1) -> tuple[list[Job], int]:
    """Embed a batch of crops in one forward pass, and save each employee through the API's own writes: the
    first photo enrolls them (replacing what they had), the others are added as references (each with its
    photo, sealed, when the reference store is on). Returns (the employees saved, references added); failures
    go to `failures`. Each item is audited."""
    vectors = iter(embedder.embed(np.stack([crop for _, crops in batch for _, crop in crops])))
    saved, added = [], 0
    with sessions() as session:
        for job, crops in batch:
            first, *more = [(path, next(vectors)) for path, _ in crops]
            try:
                _, _, existed = save_enrollment(session=session, employee_id=job.employee_id, name=job.name,
                                                vectors={embedder.model_id: first[1]}, replace=True,
                                                photo=_sealed(cipher, first[0], job.employee_id))
                saved.append(job)
                audit.add(OPERATOR, AuditEntry("bulk_enroll", job.employee_id,
                                               decision="replaced" if existed else "enrolled"))
            except DomainError as exc:
                fail(failures, audit, Failure(job.employee_id, str(job.path), exc.code, exc.message))
                continue
            for path, vector in more:
                try:
                    save_reference(session=session, employee_id=job.employee_id, max_references=max_references,
                                   vectors={embedder.model_id: vector}, photo=_sealed(cipher, path, job.employee_id))
                    added += 1
                    audit.add(OPERATOR, AuditEntry("bulk_enroll", job.employee_id, decision="reference_added"))
                except DomainError as exc:
                    fail(failures, audit, Failure(job.employee_id, str(path), exc.code, exc.message))
    return saved, added


def _sealed(cipher: ReferenceCipher | None, path: Path, employee_id: str) -> Sealed | None:
    return cipher.seal(path.read_bytes(), employee_id) if cipher is not None else None


def bulk_enroll(jobs: list[Job], settings: Settings, *, processes: int, replace: bool = False, batch_size: int = 64,
                progress: bool = False, force: bool = False, stop: Stop | None = None) -> Summary:
    """`force`: enroll photos below the quality thresholds too (otherwise they fail with poor_quality). A `stop`
    that is set ends the run after committing what is embedded."""
    with gallery(settings) as sessions:
        return _bulk_enroll(jobs, settings, sessions, processes=processes, replace=replace, batch_size=batch_size,
                            progress=progress, force=force, stop=Stop() if stop is None else stop)


def _bulk_enroll(jobs: list[Job], settings: Settings, sessions: sessionmaker[Session], *, processes: int,
                 replace: bool, batch_size: int, progress: bool, force: bool, stop: Stop) -> Summary:
    started = time.perf_counter()
    card = ModelCard.read(card_path(settings.model.path))
    config = settings.pipeline_config(card.input_size, card.preprocess)
    views = Views.of(settings.model.augment or card.augment).to_align
    # Workers come from a fork server, a clean process: one forked from a process whose torch or dlib threads
    # have run can hang on a lock those threads held (dlib's CNN detector did, once a caller had used it). And
    # from an executor, not multiprocessing.Pool: Pool.terminate() can hang for ever when it kills a worker that
    # is sending a result (CPython issue 96995; a run stopped by a signal hung so in CI), and a Pool whose worker
    # dies waits for ever, where the executor says so (BrokenProcessPool).
    workers = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("forkserver"),
                                  initializer=_init_worker, initargs=(os.getpid(), settings, config, views, force))
    audit = AuditTrail(sessions)
    try:
        embedder = Embedder.load(settings.model.path, settings.model.device, settings.model.augment,
                                 settings.model.precision)
        cipher = (load_cipher(settings.references.keys, settings.references.keys_file) if settings.references.store
                  else None)
        return _run(jobs, workers, sessions, embedder, audit, replace=replace, batch_size=batch_size,
                    progress=progress, started=started, cipher=cipher, settings=settings, stop=stop)
    finally:
        try:
            workers.shutdown(cancel_futures=True)  # the photos not started are dropped, those in hand finish
        finally:
            audit.close()


def _run(jobs: list[Job], workers, sessions, embedder: Embedder, audit: AuditTrail, *,  # noqa: ANN001
         replace: bool, batch_size: int, progress: bool, started: float,
         cipher: ReferenceCipher | None = None, settings: Settings, stop: Stop) -> Summary:
    failures, seen = [], set()
    valid = []
    with sessions() as session:
        named = {g for job in jobs for g in job.groups if is_group_id(g)}
        existing = set(groups.members_of(session=session, group_ids=sorted(named))) if named else set()
    for job in jobs:
        if not is_employee_id(job.employee_id):
            fail(failures, audit, Failure(job.employee_id[:64], str(job.path), "validation_error", EMPLOYEE_ID_RULE))
        elif job.name is not None and not is_name(job.name):
            fail(failures, audit, Failure(job.employee_id, str(job.path), "validation_error", NAME_RULE))
        elif bad := [g for g in job.groups if not is_group_id(g)]:
            fail(failures, audit, Failure(job.employee_id, str(job.path), "validation_error",
                                          f"{bad[0][:64]!r}: {GROUP_ID_RULE}"))
        elif missing := [g for g in job.groups if g not in existing]:
            fail(failures, audit, Failure(job.employee_id, str(job.path), "group_not_found",
                                          f"no group {missing[0]!r} (create it first: POST /groups)"))
        elif job.employee_id.lower() in seen:
            fail(failures, audit, Failure(job.employee_id, str(job.path), "duplicate_employee_id",
                                          "the employee appears more than once in the input (ids are unique "
                                          "regardless of case)"))
        else:
            seen.add(job.employee_id.lower())
            valid.append(job)
    if replace:
        done_already = set()
    else:
        with sessions() as session:
            done_already = repository.enrolled_ids(session=session, model_id=embedder.model_id)
    todo = [job for job in valid if job.employee_id not in done_already]
    bar = Progress(len(todo), progress)
    enrolled = added = 0
    batch: list[tuple[Job, list[tuple[Path, np.ndarray]]]] = []

    members = [job for job in valid if job.employee_id in done_already]  # whose groups to write at the end

    def flush() -> None:
        nonlocal enrolled, added
        saved, more = store(sessions, embedder, batch, failures, audit, cipher, settings.references.max)
        enrolled, added = enrolled + len(saved), added + more
        members.extend(saved)
        batch.clear()

    done, died = 0, False
    try:
        for done, (job, crops, job_failures) in enumerate(workers.map(_crop, todo), start=1):
            for failure in job_failures:
                fail(failures, audit, failure)
            if crops:
                batch.append((job, crops))
            if sum(len(c) for _, c in batch) >= batch_size:
                flush()
            bar.update(done, enrolled, len(failures))
            if stop.requested:
                break
    except BrokenProcessPool:
        log.error("a worker process died (killed for memory?): stopping after committing what is embedded")
        died = True
    if batch:
        flush()
    _join_groups(sessions, members, failures, audit, settings)
    bar.update(done if stop.requested or died else len(todo), enrolled, len(failures), final=True)
    return Summary(enrolled, len(valid) - len(todo), failures, time.perf_counter() - started, added,
                   stop.name or ("a worker process's death" if died else None))


def _join_groups(sessions, jobs: list[Job], failures: list[Failure], audit: AuditTrail,  # noqa: ANN001
                 settings: Settings) -> None:
    """Put the enrolled employees in their groups: one write per group and FACEGATE_MAX_GROUP_BULK of them."""
    by_group: dict[str, list[Job]] = {}
    for job in jobs:
        for group_id in job.groups:
            by_group.setdefault(group_id, []).append(job)
    step = settings.membership.max_bulk
    with sessions() as session:
        for group_id, members in by_group.items():
            for start in range(0, len(members), step):
                chunk = members[start:start + step]
                try:
                    join_group(session=session, group_id=group_id, employee_ids=[j.employee_id for j in chunk],
                               settings=settings)
                except DomainError as exc:
                    for job in chunk:
                        fail(failures, audit, Failure(job.employee_id, str(job.path), exc.code, exc.message))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--csv", type=Path, help="employee_id,path[,name][,groups] rows instead of one folder per "
                                                 "employee (groups: ids separated by ;)")
    parser.add_argument("--group", action="append", default=[], dest="groups", metavar="GROUP_ID",
                        help="put every employee of the run in this group (repeat for more; it must exist)")
    parser.add_argument("--processes", type=int, default=multiprocessing.cpu_count(),
                        help="processes that decode, detect and align (default: one per core)")
    parser.add_argument("--replace", action="store_true", help="re-enroll employees who already have a template")
    parser.add_argument("--references", type=int, default=1, metavar="N",
                        help="folders: enroll each employee's first N photos by name, the first as the enrollment "
                             "and the others as more references (at most FACEGATE_MAX_REFERENCES)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--force", action="store_true",
                        help="enroll photos below the quality thresholds too (they fail with poor_quality otherwise)")
    parser.add_argument("--failures", type=Path, help="write the failures to this CSV file")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty())
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    settings = Settings()
    ModelCard.read(card_path(settings.model.path))  # fail early, before any work, if the model is missing
    if not 1 <= args.references <= settings.references.max:
        parser.error(f"--references must be 1 to FACEGATE_MAX_REFERENCES ({settings.references.max})")
    if args.csv and args.references > 1:
        parser.error("--references works on folders; in a CSV an employee has one row")
    jobs = [replace_job(job, groups=tuple(dict.fromkeys([*job.groups, *args.groups])))
            for job in (jobs_from_csv(args.folder, args.csv) if args.csv
                        else jobs_from_folders(args.folder, args.references))]
    with graceful_stop() as stop:
        summary = bulk_enroll(jobs, settings, processes=args.processes, replace=args.replace,
                              batch_size=args.batch_size, progress=args.progress, force=args.force, stop=stop)
    added = f" (and {summary.references} more references)" if summary.references else ""
    print(f"enrolled {summary.enrolled}{added}, skipped {summary.skipped} already enrolled, failed "
          f"{len(summary.failures)}, in {summary.seconds:.1f} s "
          f"({summary.enrolled / max(summary.seconds, 1e-9):.1f} photos/s)")
    for code, count in Counter(f.code for f in summary.failures).most_common():
        print(f"  {code}: {count}")
    for failure in summary.failures:
        print(f"  {failure.employee_id}\t{failure.path}\t{failure.code}\t{failure.message}")
    if args.failures:
        with args.failures.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["employee_id", "path", "code", "message"])
            writer.writerows((f.employee_id, f.path, f.code, f.message) for f in summary.failures)
    if summary.stopped_by:
        print(f"stopped by {summary.stopped_by}: the {summary.enrolled} employees enrolled are committed; run the "
              "same command again to carry on (those enrolled are skipped)")
        return stop.exit_status if stop.requested else 1
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
