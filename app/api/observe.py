"""The outermost middleware: a request id for every request, its access line and its latency metric.

The id is the client's X-Request-ID when it is well formed (app.core.logs), otherwise a new one. It is set for
the request's whole life (logs, audit row) and echoed in the answer, refusals at the gate included. Every
request, answered or refused, ends with one access line and one observation of
facegate_http_request_duration_seconds by route template and status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core import metrics
from app.core.logs import REQUEST_ID, REQUEST_ID_HEADER, printable, request_id_from

access_log = logging.getLogger("facegate.access")
# A label's values must stay few: any other method a client invents counts as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RouteTemplates:
    """Which route template ("/employees/{employee_id}") a path is for, or "unmatched": the metric's label,
    whose values must stay few. Matched on the path alone, so a request refused before routing (401, 413) is
    labelled too."""

    def __init__(self, templates: Iterable[str]) -> None:
        self._patterns = [(compile_path(template)[0], template) for template in dict.fromkeys(templates)]

    def of(self, path: str) -> str:
        return next((template for pattern, template in self._patterns if pattern.match(path)), "unmatched")


class Observe:
    def __init__(self, app: ASGIApp, routes: RouteTemplates) -> None:
        self.app, self.routes = app, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_from(Headers(scope=scope).get(REQUEST_ID_HEADER))
        token = REQUEST_ID.set(request_id)
        status = 500  # what an exception that escapes everything becomes

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = self.routes.of(scope["path"])
            method = scope["method"] if scope["method"] in METHODS else "other"
            metrics.REQUEST_SECONDS.labels(method, route, str(status)).observe(elapsed)
            shown_method, path = printable(scope["method"]), printable(scope["path"])
            access_log.info("%s %s %d %.1f ms", shown_method, path, status, elapsed * 1000,
                            extra={"method": shown_method, "path": path, "route": route, "status": status,
                                   "duration_ms": round(elapsed * 1000, 2)})
            REQUEST_ID.reset(token)
