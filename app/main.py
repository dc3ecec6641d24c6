"""The ASGI app: `uvicorn app.main:app`. Everything heavy happens in the lifespan, not at import."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from app import runtime
from app.api.guard import RequestGuard, audit_refusal
from app.api.routes import employees, faces, health
from app.core.config import Settings, get_settings
from app.core.errors import install_error_handlers

DESCRIPTION = """
Face verification for an organisation: enroll **one reference photo per employee**, then check camera
photos against the gallery.

* `POST /verify` (1:1): is this the employee they claim to be?
* `POST /identify` (1:N, open set): who is this, if anyone?

Decisions compare the Euclidean distance between L2-normalised embeddings (0 = identical, 2 = opposite)
with a threshold calibrated on held-out pairs and shipped in the model card. Errors are
`{"error": {"code": ..., "message": ...}}` with stable codes.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.runtime = runtime.start(settings or get_settings())
        # The sync views run on this bounded pool of threads, never on the event loop.
        anyio.to_thread.current_default_thread_limiter().total_tokens = app.state.runtime.settings.worker_threads
        try:
            yield
        finally:
            app.state.runtime.close()
            app.state.runtime = None

    app = FastAPI(title="facegate", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    install_error_handlers(app, audit_refusal)

    app.add_middleware(RequestGuard)
    for module in (faces, employees, health):
        app.include_router(module.router)
    return app


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
app = create_app()
