"""Typed dependencies. Tests swap them through app.dependency_overrides."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Literal

import anyio.to_thread
from fastapi import Depends, Request, Security, params
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session

from app.api.guard import action_of, audit_refusal
from app.core.errors import Forbidden, NotReady, Unauthorized, UnsupportedMediaType
from app.runtime import Runtime
from app.services.audit import AuditTrail
from app.services.groups import GroupService
from app.services.keys import Caller
from app.services.liveness import Liveness
from app.services.recognition import RecognitionService


# The cheap dependencies are async: a sync one costs a hop through the request thread pool, and under load
# every hop queues behind the requests that hold the pool's threads.
async def get_runtime(request: Request) -> Runtime:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise NotReady("the service is starting")
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[Session]:
    """A session for the route. Made here, on the event loop, at no cost: it connects on first use, in the
    route's thread. Closed here too, unless it still holds a connection: giving that back rolls back, a query,
    so that close goes to a thread."""
    session = runtime.sessions()
    try:
        yield session
    finally:
        if session.in_transaction():
            await anyio.to_thread.run_sync(session.close)
        else:
            session.close()


async def get_service(runtime: RuntimeDep) -> RecognitionService:
    return runtime.service


SessionDep = Annotated[Session, Depends(get_session)]
ServiceDep = Annotated[RecognitionService, Depends(get_service)]


async def get_audit(runtime: RuntimeDep) -> AuditTrail:
    return runtime.audit


AuditDep = Annotated[AuditTrail, Depends(get_audit)]


async def get_groups(runtime: RuntimeDep) -> GroupService:
    return runtime.groups


GroupsDep = Annotated[GroupService, Depends(get_groups)]

async def get_liveness(runtime: RuntimeDep) -> Liveness:
    return runtime.liveness


LivenessDep = Annotated[Liveness, Depends(get_liveness)]

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key made with "
                              "`python -m app.cli.keys create --scope admin|verify|metrics`")


def caller_with(*scopes: str):  # noqa: ANN201 - a FastAPI dependency
    """The caller that app.api.guard authenticated before the body was read, if its key has one of `scopes`.

    The header parameter is declared for the OpenAPI schema (the docs' "Authorize" button); the guard has
    already read it.
    """

    async def dependency(request: Request, runtime: RuntimeDep,
                         _: Annotated[str | None, Security(api_key_header)]) -> Caller:
        if not runtime.settings.keys.required:
            return Caller(None, None)
        caller = getattr(request.state, "caller", None)
        if caller is None or caller.key_id is None:
            raise Unauthorized("send an API key in the X-API-Key header")
        if caller.scope not in scopes:
            runtime.audit.refused(caller, action_of(request.url.path), Forbidden.code)
            raise Forbidden(f"this key's scope is {caller.scope!r}; this endpoint needs "
                            + " or ".join(repr(s) for s in scopes))
        return caller

    dependency.scopes = frozenset(scopes)  # read by fields_as_declared, which runs first
    return dependency


AdminCaller = Annotated[Caller, Depends(caller_with("admin"))]
# A door's key verifies and identifies; an admin key may too (the console's "try it"), having every power already.
VerifyCaller = Annotated[Caller, Depends(caller_with("verify", "admin"))]
AnyCaller = Annotated[Caller, Depends(caller_with("admin", "verify", "metrics"))]
# A monitoring system's key reads the metrics and nothing else; an admin key may read them too.
MetricsCaller = Annotated[Caller, Depends(caller_with("metrics", "admin"))]


# The one field a request may repeat: several photos of one enrollment, or frames of one presentation.
MULTI_VALUED = frozenset({"image"})
# The media types of a form's body.
FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")


@dataclass(frozen=True)
class Declared:
    """The body's fields (a form's, or a JSON object's keys) and the query parameters a route reads, its
    dependencies' included, how it reads its body ("form", "json", or None for no body), and the key scopes that
    may call it (None: any caller)."""

    fields: frozenset[str]
    query: frozenset[str]
    body: Literal["form", "json"] | None
    scopes: frozenset[str] | None


_DECLARED: dict[str, Declared] = {}  # route's unique id -> what it reads


def declared_fields(route: APIRoute) -> Declared:
    if route.unique_id not in _DECLARED:
        fields, query, kinds, scopes, todo = set(), set(), set(), None, [route.dependant]
        while todo:
            dependant = todo.pop()
            scopes = getattr(dependant.call, "scopes", scopes)
            fields |= {param.alias for param in dependant.body_params}
            kinds |= {"form" if isinstance(p.field_info, params.Form) else "json" for p in dependant.body_params}
            query |= {param.alias for param in dependant.query_params}
            todo += dependant.dependencies
        assert len(kinds) <= 1, f"{route.path} reads its body both as a form and as JSON"
        _DECLARED[route.unique_id] = Declared(frozenset(fields), frozenset(query), next(iter(kinds), None), scopes)
    return _DECLARED[route.unique_id]


def has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return "transfer-encoding" in request.headers or (length is not None and length.strip() not in ("", "0"))


def unread_body(request: Request, body: Literal["form", "json"] | None) -> str | None:
    """Why the route would read none of the request's body, if it would not: FastAPI reads a form only from a
    form's media types and JSON only from JSON's, and silently takes a body in another as no fields at all:
    PATCH /groups/{id} with `{"name": "Lab 3"}` as JSON erased the group's name."""
    if not has_body(request):
        return None
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    sent = media or "a body with no Content-Type"
    if body is None:
        return f"this endpoint takes no body; {sent} was sent"
    if body == "form" and media not in FORMS:
        return f"this endpoint takes form fields ({' or '.join(FORMS)}), not {sent}"
    if body == "json" and not (media == "application/json" or re.fullmatch(r"application/[^/]+\+json", media)):
        return f"this endpoint takes a JSON body (application/json), not {sent}"
    return None


def json_keys(body: bytes) -> list[str]:
    """The keys of a JSON object, each as often as it is given (json.loads keeps the last of a repeated one);
    none for another document or for one that does not parse (FastAPI answers that)."""
    objects: list[list[tuple[str, object]]] = []

    def keep(pairs: list[tuple[str, object]]) -> dict:
        objects.append(pairs)  # inner objects first: the document's own comes last
        return dict(pairs)

    try:
        document = json.loads(body, object_pairs_hook=keep)
    except (ValueError, RecursionError):
        return []
    return [key for key, _ in objects[-1]] if isinstance(document, dict) else []


async def fields_as_declared(request: Request) -> None:
    """Refuse a body the route would not read (415), and a form field, JSON key or query parameter that it does
    not read, one that it reads given more than once (photos aside), or a form field sent empty. An unread field
    would be silently ignored: `?group=lab-3` where /identify reads a form field would search the whole gallery,
    and `?threshold=` at /verify would leave the calibrated threshold in place of the stricter one asked. "The
    last one wins" would let a proxy or a log see one employee_id and the service use another, and an empty
    field would pass for one not sent (FastAPI reads "" as absent)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    declared = declared_fields(route)
    caller = getattr(request.state, "caller", None)
    if declared.scopes is not None and caller is not None and caller.key_id is not None \
            and caller.scope not in declared.scopes:
        return  # the route's scope check answers 403: a key that may not call it learns nothing of its fields
    if (why := unread_body(request, declared.body)) is not None:
        audit_refusal(request, UnsupportedMediaType.code)
        raise UnsupportedMediaType(why)
    form = await request.form()  # already parsed for the route; Starlette keeps it
    keys = [key for key, _ in form.multi_items()]
    if declared.body == "json":
        keys = json_keys(await request.body())  # already read for the route; Starlette keeps the bytes
    problems = []
    for where, fields, reads, misplaced in (
            ("body", keys, declared.fields, "send it in the query string, not in the body"),
            ("query", [key for key, _ in request.query_params.multi_items()], declared.query,
             "send it as a form field, not in the query string")):
        for key, count in sorted(Counter(fields).items()):
            if key not in reads:
                known = key in declared.fields | declared.query
                problems.append({"loc": (where, key), "msg": misplaced if known else "not a field of this endpoint",
                                 "type": "unknown"})
            elif count > 1 and not (where == "body" and key in MULTI_VALUED):
                problems.append({"loc": (where, key), "msg": "given more than once", "type": "repeated"})
    empty = {key for key, value in form.multi_items() if value == "" and key in declared.fields}
    problems += [{"loc": ("body", key), "msg": "given empty", "type": "empty"} for key in sorted(empty)]
    if problems:
        raise RequestValidationError(problems)
