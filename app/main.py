"""The ASGI app: `uvicorn app.main:app`. Everything heavy happens in the lifespan, not at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from app import runtime
from app.api.deps import FORMS
from app.api.errors import install_error_handlers
from app.api.guard import DOCS_ASSETS, PUBLIC_PATHS, RequestGuard, audit_refusal
from app.api.head import HeadAsGet
from app.api.observe import Observe, RouteTemplates
from app.api.pages import COMMON, CONSOLE_POLICY, DOCS_POLICY, PageHeaders
from app.api.routes import audit, console, employees, faces, groups, health, liveness, metrics
from app.core import logs
from app.core.config import Settings, get_settings

DESCRIPTION = """
Face verification for an organisation: enroll **one reference photo per employee** (more are optional:
`POST /employees/{id}/references`), then check camera photos against the gallery. People who enroll
employees use the web console at [/console](/console); everything it does is an endpoint below.

* `POST /verify` (1:1): is this the employee they claim to be?
* `POST /identify` (1:N, open set): who is this, if anyone?

Decisions compare the Euclidean distance between L2-normalised embeddings (0 = identical, 2 = opposite)
with a threshold calibrated on held-out pairs and shipped in the model card. Errors are
`{"error": {"code": ..., "message": ...}}` with stable codes.
"""


def publish_closed_forms(app: FastAPI) -> None:
    """The OpenAPI document says what app.api.deps.fields_as_declared enforces: a body takes no field it does not
    list (`additionalProperties: false` on each form's and JSON body's schema)."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()  # cached by FastAPI as app.openapi_schema: amended in place, once
            components = schema.get("components", {}).get("schemas", {})
            for operations in schema["paths"].values():
                for operation in operations.values():
                    for media, body in operation.get("requestBody", {}).get("content", {}).items():
                        name = body.get("schema", {}).get("$ref", "").rpartition("/")[2]
                        if media in (*FORMS, "application/json") and name in components:
                            components[name]["additionalProperties"] = False
        return app.openapi_schema

    app.openapi = openapi


def create_app(settings: Settings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        chosen = settings or get_settings()
        logs.configure(chosen.log_format)
        app.state.runtime = runtime.start(chosen)
        # The sync views run on this bounded pool of threads, never on the event loop.
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = app.state.runtime.settings.compute.worker_threads
        try:
            yield
        finally:
            app.state.runtime.close()
            app.state.runtime = None

    # /docs and /redoc load Swagger UI and ReDoc from the app, not from a CDN: door networks are often offline.
    # No trailing-slash redirects: Starlette builds them as absolute URLs from the request's Host header, so
    # "GET /employees/" with "Host: evil.example" sent clients to http://evil.example/employees. A path with a
    # stray slash is answered 404 not_found instead.
    app = FastAPIOffline(title="facegate", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                         static_url=DOCS_ASSETS, redirect_slashes=False)
    install_error_handlers(app, audit_refusal)

    routers = [module.router for module in (faces, liveness, employees, groups, audit, console, health, metrics)]
    for router in routers:
        app.include_router(router)
    console.mount_assets(app)
    publish_closed_forms(app)
    app.add_middleware(HeadAsGet)
    app.add_middleware(RequestGuard)
    docs = COMMON | {"Content-Security-Policy": DOCS_POLICY}
    console_headers = COMMON | {"Content-Security-Policy": CONSOLE_POLICY}
    app.add_middleware(PageHeaders, pages={console.CONSOLE: console_headers, console.DOOR: console_headers,
                                           "/docs": docs, "/redoc": docs})
    # Outermost: the request id and the latency cover the gate's refusals too.
    templates = [route.path for router in routers for route in router.routes]
    app.add_middleware(Observe, routes=RouteTemplates([*templates, *sorted(PUBLIC_PATHS),
                                                        DOCS_ASSETS + "/{file:path}",
                                                        console.CONSOLE_ASSETS + "/{file:path}"]))
    return app


logs.configure()
app = create_app()
