"""Logging: every line names the request it belongs to, as text or as JSON lines (FACEGATE_LOG_FORMAT).

The request id lives in a context variable set by app.api.observe for the request's whole life; anyio runs
the sync views in a copy of that context, so the request threads see it too. It is stamped on every log
record when the record is made (a record factory, not a handler's filter), so every handler sees it,
uvicorn's and pytest's included. Background threads (the feed, the audit writer) log "-".

What is never logged: images, embeddings, API keys. Log calls pass ids, codes, counts and timings only.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["text", "json"]

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
REQUEST_ID_HEADER = "x-request-id"
# What a client (or the proxy in front) may send as its request id; anything else is replaced by our own, so
# that an id can neither forge log lines nor carry a payload into the audit trail.
REQUEST_ID_SHAPE = re.compile(r"[A-Za-z0-9._:=+/-]{1,64}")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
# Fields that app.api.observe's access line passes as `extra`, and that JSON lines carry as fields.
ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "route")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # C0, DEL, C1 (U+0085 is a line break) and the separators


def request_id_from(header: str | None) -> str:
    """The client's request id if it is well formed, otherwise a new one."""
    if header and REQUEST_ID_SHAPE.fullmatch(header):
        return header
    return uuid.uuid4().hex


def printable(text: str) -> str:
    """`text` with control characters escaped: a path like "/x%0Afake line" stays on one log line."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, request_id, message, the access fields, any exception."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", None),
            "message": record.getMessage(),
        }
        line.update({name: getattr(record, name) for name in ACCESS_FIELDS if hasattr(record, name)})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


_base_factory = logging.getLogRecordFactory()


def _record_with_request_id(*args: object, **kwargs: object) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    record.request_id = REQUEST_ID.get() or "-"
    return record


class _OurHandler(logging.StreamHandler):
    """The handler configure() installs (a second call replaces it and leaves others alone). It writes to
    whatever sys.stderr is when a line is written, as logging's own last resort does, so that a stream swapped
    and closed meanwhile (pytest's capture) is never written to."""

    @property
    def stream(self):  # noqa: ANN201 - a text stream
        return sys.stderr

    @stream.setter
    def stream(self, _: object) -> None:
        pass


def configure(log_format: LogFormat = "text", level: int | str = logging.INFO) -> None:
    """Install the record factory and one stderr handler on the root logger; uvicorn's loggers propagate to it
    instead of printing their own lines, and uvicorn's access line gives way to ours. Idempotent; handlers
    that others installed (pytest's) stay."""
    logging.setLogRecordFactory(_record_with_request_id)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(handler)
    handler = _OurHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # app.api.observe writes the access line, with the request id, the route and the duration.
    logging.getLogger("uvicorn.access").disabled = True
