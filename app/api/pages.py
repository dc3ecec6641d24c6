"""Security headers for the app's own web pages: the console, /docs and /redoc.

Each page may load only what the app itself serves: a Content-Security-Policy that the browser enforces, so
that no page reaches the internet (door networks are often offline, and a page that calls out leaks who
uses it) and no injected script runs. The console runs no inline code at all; Swagger UI's and ReDoc's pages,
as FastAPI writes them, start with an inline script, which their policy must allow.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COMMON = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
CONSOLE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
                  "media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                  "form-action 'self'")
# ReDoc's sidebar shows Redocly's logo from their CDN: this refuses it (the page works without it).
DOCS_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
               "frame-ancestors 'none'; base-uri 'none'")


class PageHeaders:
    """Adds `headers` (a path prefix -> headers) to the responses whose path starts with a prefix."""

    def __init__(self, app: ASGIApp, pages: dict[str, dict[str, str]]) -> None:
        self.app, self.pages = app, pages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = next((h for prefix, h in self.pages.items()
                        if scope["type"] == "http" and scope["path"].startswith(prefix)), None)
        if headers is None:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)
