"""What the service holds while it runs: built once in the lifespan, never at import time."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.faces import FacePipeline, PipelineConfig
from app.faces.embedder import Embedder
from app.gallery import db
from app.services.recognition import RecognitionService, load_index

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    service: RecognitionService

    def close(self) -> None:
        self.engine.dispose()


def start(settings: Settings) -> Runtime:
    if settings.migrate_on_start:
        db.migrate(settings.database_url)
    engine = db.make_engine(settings.database_url)
    db.ping(engine)
    sessions = db.make_sessionmaker(engine)
    embedder = Embedder.load(settings.model_path, settings.device)
    pipeline = FacePipeline(PipelineConfig(crop_size=embedder.input_size, detect_max_side=settings.detect_max_side))
    with sessions() as session:
        index = load_index(session=session, embedder=embedder)
    log.info("gallery index loaded: %d templates of %s", len(index), embedder.model_id)
    service = RecognitionService(settings=settings, pipeline=pipeline, embedder=embedder, index=index)
    return Runtime(settings, engine, sessions, service)
