"""What the service holds while it runs: built once in the lifespan, never at import time."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.gallery import db
from app.gallery.feed import ChangeFollower, bootstrap
from app.gallery.index import EmbeddingIndex
from app.keys import KeyStore
from app.services.audit import AuditTrail
from app.services.batcher import MicroBatcher
from app.services.recognition import RecognitionService
from model.faces.embedder import Embedder
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

    def close(self) -> None:
        self.follower.close()
        self.audit.close()
        if self.service.batcher is not None:
            self.service.batcher.close()
        self.engine.dispose()


def start(settings: Settings) -> Runtime:
    if settings.migrate_on_start:
        db.migrate(settings.database_url)
    engine = db.make_engine(settings.database_url)
    db.ping(engine)
    sessions = db.make_sessionmaker(engine)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    embedder = Embedder.load(settings.model_path, settings.device, settings.augment)
    pipeline = FacePipeline(settings.pipeline_config(embedder.input_size, embedder.card.preprocess))
    started = time.perf_counter()
    index = EmbeddingIndex(embedder.dim, embedder.device)
    with sessions() as session:
        since = bootstrap(index, session=session, model_id=embedder.model_id)
    log.info("gallery index loaded: %d templates of %s in %.2f s", len(index), embedder.model_id,
             time.perf_counter() - started)
    follower = ChangeFollower(engine=engine, sessions=sessions, index=index, model_id=embedder.model_id,
                              since=since, poll_interval=settings.feed_poll_interval,
                              retention=settings.feed_retention_seconds)
    follower.start()
    batching = settings.micro_batch == "on" or (settings.micro_batch == "auto" and embedder.device.type == "cuda")
    batcher = MicroBatcher(embedder, max_batch=settings.micro_batch_size,
                           max_delay_ms=settings.micro_batch_delay_ms) if batching else None
    log.info("request threads: %d; micro-batching: %s", settings.worker_threads,
             f"up to {settings.micro_batch_size} faces within {settings.micro_batch_delay_ms:g} ms"
             if batcher else "off")
    service = RecognitionService(settings=settings, pipeline=pipeline, embedder=embedder, index=index,
                                 batcher=batcher)
    if not settings.auth:
        log.warning("AUTHENTICATION IS OFF (FACEGATE_AUTH=false): anyone who can reach this port can enroll, "
                    "delete and identify. Turn it on anywhere but a developer's machine.")
    keys = KeyStore(sessions, ttl=settings.key_cache_seconds)
    return Runtime(settings, engine, sessions, service, follower, keys, AuditTrail(sessions))
