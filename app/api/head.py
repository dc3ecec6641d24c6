"""HEAD, which RFC 9110 asks every general-purpose server to support wherever it supports GET: answered as GET
is, headers and Content-Length included, without the body. Load balancers and uptime checks probe /healthz so.
FastAPI's routes answer only the methods they declare, so a HEAD was 405 everywhere."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    """Serves a HEAD request as the GET of its path, dropping the body: innermost, so that the gate, the
    access log and the metrics see the method the client sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)
