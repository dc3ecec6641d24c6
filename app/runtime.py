"""What the service holds while it runs: built once in the lifespan, never at import time."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

import torch
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.core import metrics
from app.core.config import MiB, Settings
from app.gallery import db, repository
from app.gallery.feed import ChangeFollower, bootstrap
from app.gallery.index import EmbeddingIndex
from app.services.audit import AuditTrail
from app.services.audit_spool import AuditSpool
from app.services.batcher import MicroBatcher
from app.services.groups import GroupService
from app.services.keys import KeyStore
from app.services.liveness import Liveness
from app.services.recognition import RecognitionService, Serving
from app.services.references import load_cipher
from model.faces.embedder import Embedder
from model.faces.fallback import CnnProcess
from model.faces.pipeline import FacePipeline

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    service: RecognitionService
    follower: ChangeFollower
    keys: KeyStore
    audit: AuditTrail
    groups: GroupService
    liveness: Liveness
    models: dict[str, Embedder] = field(default_factory=dict)  # every model loaded here, by id
    cnn: CnnProcess | None = None  # the CNN fallback detector's process, shared by every pipeline
    _stop: threading.Event = field(default_factory=threading.Event)
    _gauges: threading.Thread | None = None
    # What served before a model switch: its micro-batcher may still hold requests, so it is closed at the end.
    _retired: list[Serving] = field(default_factory=list)

    def follow_model(self, session: Session) -> bool:
        """The change feed announced a new active model: serve it, with an index of its templates built from
        the database, swapped in with the model in one step. Called by the feed's follower, under its lock.
        A replica that has not loaded the model stops answering recognition requests (503): it must never
        compare a photo with templates of another model."""
        active = repository.active_model(session=session)
        if active is None or active == self.service.model_id:
            return False
        embedder = self.models.get(active)
        if embedder is None:
            self.service.unavailable = (f"the gallery now serves model {active}, which this replica has not loaded "
                                        "(FACEGATE_NEXT_MODEL_PATH); restart it with that model")
            log.error("%s", self.service.unavailable)
            return False
        started = time.perf_counter()
        serving = make_serving(embedder, self.settings, cnn=self.cnn)
        self.follower.follow(serving.index, active, session)
        self._retired.append(self.service.serving)
        self.service.switch(serving)
        self._model_info()
        log.warning("switched to model %s: %d templates loaded in %.2f s", active, len(serving.index),
                    time.perf_counter() - started)
        return True

    def _model_info(self) -> None:
        """facegate_model_info: 1 for the model serving, 0 for the one it replaced (in multiprocess mode a
        value, once written, stays in the worker's file: it must be set to 0, not forgotten)."""
        for retired in self._retired:
            model = retired.embedder
            metrics.MODEL_INFO.labels(model.model_id, model.augment, str(model.device)).set(0)
        model = self.service.embedder
        metrics.MODEL_INFO.labels(model.model_id, model.augment, str(model.device)).set(1)

    def refresh_gauges(self) -> None:
        """The metrics that are states, not events: set from what this process holds (cheap, no query)."""
        metrics.TEMPLATES.set(len(self.service.index))
        sizes = self.service.index.group_sizes()
        metrics.GROUPS.set(len(sizes))
        metrics.LARGEST_GROUP.set(max(sizes.values(), default=0))
        metrics.FEED_LAG_SECONDS.set(max(0.0, time.time() - self.follower.read_at))
        metrics.FEED_LAG_ROWS.set(self.follower.behind)
        metrics.AUDIT_QUEUED.set(self.audit.queued)

    def refresh_stale_templates(self) -> None:
        with self.sessions() as session:
            metrics.STALE_TEMPLATES.set(self.service.stale_templates(session=session))

    def start_gauges(self, interval: float = 1.0, stale_interval: float = 30.0) -> None:
        """Refresh the gauges every `interval` seconds (the stale count, a query, every `stale_interval`)
        from a background thread: in multiprocess mode a scrape reads every worker's last values."""
        self._model_info()

        def run() -> None:
            stale_at = 0.0
            while not self._stop.is_set():
                try:
                    self.refresh_gauges()
                    if time.monotonic() - stale_at >= stale_interval:
                        self.refresh_stale_templates()
                        stale_at = time.monotonic()
                except SQLAlchemyError as exc:  # the database is away: the feed's lag says so
                    log.warning("metrics: stale template count failed (%s)", exc.__class__.__name__)
                    stale_at = time.monotonic()
                self._stop.wait(interval)

        self._gauges = threading.Thread(target=run, name="metrics-gauges", daemon=True)
        self._gauges.start()

    def close(self) -> None:
        """The lifespan's end, after uvicorn has stopped listening and the requests in flight have finished:
        stop following the feed, write every queued audit row, stop the batcher, close the connections."""
        self._stop.set()
        if self._gauges is not None:
            self._gauges.join(timeout=5)
        self.follower.close()
        self.audit.close()
        for serving in [*self._retired, self.service.serving]:
            if serving.batcher is not None:
                serving.batcher.close()
        if self.cnn is not None:
            self.cnn.close()
        self.engine.dispose()
        metrics.process_exited(os.getpid())
        log.info("stopped: feed closed, audit trail written (%d rows dropped in this process's life)",
                 self.audit.dropped)


def make_serving(embedder: Embedder, settings: Settings, serves: bool = True, cnn: CnnProcess | None = None) -> Serving:
    """What serves `embedder`: its pipeline, an empty index and, when batching, a micro-batcher. A model that
    does not serve yet (`serves` False: the next one, for enrollments) needs neither index nor batcher."""
    pipeline = FacePipeline(settings.pipeline_config(embedder.input_size, embedder.card.preprocess), cnn=cnn)
    if not serves:
        return Serving(embedder, pipeline)
    compute = settings.compute
    batching = compute.micro_batch == "on" or (compute.micro_batch == "auto" and embedder.device.type == "cuda")
    batcher = MicroBatcher(embedder, max_batch=compute.micro_batch_size,
                           max_delay_ms=compute.micro_batch_delay_ms) if batching else None
    return Serving(embedder, pipeline, EmbeddingIndex(embedder.dim, embedder.device, cohort=embedder.cohort), batcher)


FALLBACK_START_SECONDS = 60.0


def start_fallback(settings: Settings) -> CnnProcess | None:
    """The CNN fallback detector in a process of its own (model.faces.fallback says why), or None when off."""
    if not settings.photos.fallback_max_pixels:
        return None
    return CnnProcess(timeout=settings.photos.fallback_seconds, observe=metrics.observe_fallback)


def load_models(settings: Settings) -> dict[str, Embedder]:
    """The serving model, and the next one when one is being rolled out, by id."""
    paths = [settings.model.path] + ([settings.model.next_path] if settings.model.next_path else [])
    return {model.model_id: model for model in
            (Embedder.load(path, settings.model.device, settings.model.augment,
                           settings.model.precision) for path in paths)}


def start(settings: Settings) -> Runtime:
    # a malformed reference key fails here, at start-up, not at the first enrollment
    cipher = load_cipher(settings.references.keys, settings.references.keys_file) if settings.references.store else None
    engine, sessions = db.open_gallery(settings.database_url, migrate_first=settings.migrate_on_start)
    db.ping(engine)
    if settings.compute.torch_threads:
        torch.set_num_threads(settings.compute.torch_threads)
    models = load_models(settings)
    with sessions() as session:
        active = repository.adopt_model(session=session, model_id=next(iter(models)))
    if active not in models:
        engine.dispose()
        raise RuntimeError(f"the gallery serves model {active}, which this replica does not have: set "
                           "FACEGATE_MODEL_PATH (or FACEGATE_NEXT_MODEL_PATH) to it. A new model is rolled out "
                           "with python -m app.cli.reembed (docs/deployment.md: upgrading the model)")
    cnn = start_fallback(settings)
    serving = make_serving(models[active], settings, cnn=cnn)
    upcoming = next((make_serving(m, settings, serves=False, cnn=cnn) for i, m in models.items() if i != active),
                    None)
    started = time.perf_counter()
    with sessions() as session:
        since = bootstrap(serving.index, session=session, model_id=active)
    log.info("gallery index loaded: %d templates of %s in %.2f s%s", len(serving.index), active,
             time.perf_counter() - started,
             f"; enrollments also make templates of the next model, {upcoming.model_id}" if upcoming else "")
    if cnn is not None:  # it loaded meanwhile; ready means ready for a photo only the CNN finds a face in
        cnn.wait_started(FALLBACK_START_SECONDS)
    follower = ChangeFollower(engine=engine, sessions=sessions, index=serving.index, model_id=active, since=since,
                              poll_interval=settings.feed.poll_interval, retention=settings.feed.retention_seconds)
    log.info("request threads: %d; micro-batching: %s", settings.compute.worker_threads,
             f"up to {settings.compute.micro_batch_size} faces within {settings.compute.micro_batch_delay_ms:g} ms"
             if serving.batcher else "off")
    service = RecognitionService(settings=settings, serving=serving, upcoming=upcoming, cipher=cipher)
    keys = KeyStore(sessions, ttl=settings.keys.cache_seconds, grace=settings.keys.grace_seconds)
    audit = AuditTrail(sessions, spool=AuditSpool(settings.audit.spool_dir, settings.audit.spool_max_mb * MiB))
    runtime = Runtime(settings, engine, sessions, service, follower, keys, audit,
                      GroupService(settings=settings, recognition=service, sessions=sessions), Liveness(settings),
                      models, cnn)
    follower.on_model_change = runtime.follow_model
    follower.start()
    if not settings.keys.required:
        log.warning("AUTHENTICATION IS OFF (FACEGATE_AUTH=false): anyone who can reach this port can enroll, "
                    "delete and identify. Turn it on anywhere but a developer's machine.")
    if settings.references.store:
        log.info("reference store on: enrollment photos are kept, encrypted (key %s)",
                 runtime.service.cipher.primary)
    runtime.start_gauges()
    return runtime
