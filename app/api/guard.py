"""The gate every request passes before its body is read: who is asking, and how much they may send.

A pure ASGI middleware, because FastAPI parses a multipart body before any dependency runs: a key checked in a
dependency is checked after an anonymous client has already uploaded (and Starlette spooled to disk) whatever
it liked. Here, in order:

0. The head's size. uvicorn bounds a head that arrives in pieces (--h11-max-incomplete-event-size), not one
   that arrives in one write: a head over MAX_HEAD_BYTES is refused here with 431, however it was sent.
1. Authentication. A request for anything but the public paths needs one well-formed, known, unrevoked key in
   X-API-Key (or `Authorization: Bearer`); otherwise 401 before one byte of the body is read. The caller goes
   to `scope["state"]`, where the routes' dependencies check its scope (403).
2. The body's size. A Content-Length over the limit is refused at once; a chunked body (no Content-Length) is
   counted as it streams and cut off with 413 the moment it passes the limit.

Each refusal is audited, and closes the connection (`Connection: close`): uvicorn would otherwise read and
discard the rest of a refused upload, gigabytes if the client announced them, to keep the connection alive.
"""

from __future__ import annotations

import anyio.to_thread
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import DATABASE_AWAY, database_down, error_response
from app.core.errors import HeadersTooLarge, Unauthorized
from app.services.keys import Caller
from model.faces.errors import ImageTooLarge

# Room for the multipart envelope and the form fields around the photo itself.
MULTIPART_OVERHEAD = 64 * 1024
# The request line and headers, as scripts/serve.sh bounds them for a head that arrives in pieces.
MAX_HEAD_BYTES = 16 * 1024
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
# Swagger UI's and ReDoc's files, served by the app itself (fastapi-offline): /docs works without internet.
DOCS_ASSETS = "/docs-assets"
# The web console's page and files (app.api.routes.console): they hold no data, and ask for a key to fetch any.
CONSOLE = "/console"


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith((DOCS_ASSETS + "/", CONSOLE + "/")) or path == CONSOLE


def action_of(path: str) -> str:
    """The audit trail's action for a request that was refused before its route ran."""
    first = path.strip("/").split("/", 1)[0]
    return first if first in ("enroll", "verify", "identify", "employees", "groups", "audit") else "request"


def audit_refusal(request: Request, code: str) -> None:
    """Audit a request that was refused before its route ran (the gate audits its own refusals)."""
    runtime = getattr(request.app.state, "runtime", None)
    caller = getattr(request.state, "caller", None)
    if runtime is not None and caller is not None:
        runtime.audit.refused(caller, action_of(request.url.path), code)


def presented_keys(headers: Headers) -> set[str]:
    """Every key the request presents: in each X-API-Key header, and in `Authorization: Bearer` (Prometheus'
    way). More than one is refused, never "the first one wins": a proxy or a log could see one key and the
    service use another."""
    keys = {value.strip() for value in headers.getlist("x-api-key")}
    for value in headers.getlist("authorization"):
        scheme, _, credentials = value.partition(" ")
        if scheme.lower() == "bearer":
            keys.add(credentials.strip())
    return keys - {""}


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit. An HTTPException, so that FastAPI's body
    parsing lets it through (it turns any other error into a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


def head_bytes(scope: Scope) -> int:
    """About what the request line and headers took on the wire."""
    line = len(scope["method"]) + len(scope.get("raw_path") or scope["path"]) + len(scope.get("query_string", b""))
    return line + 12 + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


async def refuse(response: JSONResponse, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer a refusal and close the connection, without reading what is left of the body."""
    response.headers["Connection"] = "close"
    await response(scope, receive, send)


class RequestGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = getattr(scope.get("app").state, "runtime", None) if scope["type"] == "http" else None
        if runtime is None:  # lifespan, or a request before start-up finished (its dependency answers 503)
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        caller = Caller(None, None)
        source = client[0] if (client := scope.get("client")) else None
        if (size := head_bytes(scope)) > MAX_HEAD_BYTES:
            refusal = HeadersTooLarge(f"the request head is about {size} bytes; the limit is {MAX_HEAD_BYTES}")
            runtime.audit.refused(caller, action_of(scope["path"]), refusal.code, source=source)
            await refuse(error_response(refusal), scope, receive, send)
            return
        if runtime.settings.keys.required and not is_public(scope["path"]):
            keys = presented_keys(headers)
            key = next(iter(keys)) if len(keys) == 1 else ""
            answered, found = runtime.keys.check_cached(key) if key else (True, None)
            try:
                if not answered:  # a query: off the event loop
                    found = await anyio.to_thread.run_sync(runtime.keys.check, key)
            except DATABASE_AWAY as exc:  # the key's cache entry expired and the database is away
                await refuse(database_down(exc), scope, receive, send)
                return
            if found is None:
                if len(keys) > 1:
                    why = f"send one API key, in X-API-Key or Authorization: Bearer, not {len(keys)} different ones"
                else:
                    why = "the API key is unknown or revoked" if key else "send an API key in the X-API-Key header"
                refusal = Unauthorized(why)
                runtime.audit.refused(caller, action_of(scope["path"]), refusal.code, source=source)
                await refuse(error_response(refusal), scope, receive, send)
                return
            caller = found
        scope.setdefault("state", {})["caller"] = caller

        limit = runtime.settings.photos.max_upload_bytes + MULTIPART_OVERHEAD
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            refusal = ImageTooLarge(f"the request is {length} bytes; the limit is {limit}")
            runtime.audit.refused(caller, action_of(scope["path"]), refusal.code, source=source)
            await refuse(error_response(refusal), scope, receive, send)
            return

        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    runtime.audit.refused(caller, action_of(scope["path"]), ImageTooLarge.code, source=source)
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, capped_receive, send)
