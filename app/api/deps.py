"""Typed dependencies. Tests swap them through app.dependency_overrides."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session

from app.api.guard import action_of
from app.core.errors import Forbidden, NotReady, Unauthorized
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

    return dependency


AdminCaller = Annotated[Caller, Depends(caller_with("admin"))]
# A door's key verifies and identifies; an admin key may too (the console's "try it"), having every power already.
VerifyCaller = Annotated[Caller, Depends(caller_with("verify", "admin"))]
AnyCaller = Annotated[Caller, Depends(caller_with("admin", "verify", "metrics"))]
# A monitoring system's key reads the metrics and nothing else; an admin key may read them too.
MetricsCaller = Annotated[Caller, Depends(caller_with("metrics", "admin"))]


# The one field a request may repeat: several photos of one enrollment, or frames of one presentation.
MULTI_VALUED = frozenset({"image"})


@dataclass(frozen=True)
class Declared:
    """The form fields and query parameters a route reads, its dependencies' included."""

    form: frozenset[str]
    query: frozenset[str]


_DECLARED: dict[str, Declared] = {}  # route's unique id -> what it reads


def declared_fields(route: APIRoute) -> Declared:
    if route.unique_id not in _DECLARED:
        form, query, todo = set(), set(), [route.dependant]
        while todo:
            dependant = todo.pop()
            form |= {param.alias for param in dependant.body_params}
            query |= {param.alias for param in dependant.query_params}
            todo += dependant.dependencies
        _DECLARED[route.unique_id] = Declared(frozenset(form), frozenset(query))
    return _DECLARED[route.unique_id]


async def fields_as_declared(request: Request) -> None:
    """Refuse a form field or query parameter that the route does not read, one that it reads given more than
    once (photos aside), or a form field sent empty. An unread field would be silently ignored: `?group=lab-3`
    where /identify reads a form field would search the whole gallery, and `?threshold=` at /verify would leave
    the calibrated threshold in place of the stricter one asked. "The last one wins" would let a proxy or a log
    see one employee_id and the service use another, and an empty field would pass for one not sent (FastAPI
    reads "" as absent)."""
    form = await request.form()  # already parsed for the route; Starlette keeps it
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    declared = declared_fields(route)
    problems = []
    for where, fields, reads, misplaced in (
            ("body", form, declared.form, "send it in the query string, not as a form field"),
            ("query", request.query_params, declared.query, "send it as a form field, not in the query string")):
        for key, count in sorted(Counter(key for key, _ in fields.multi_items()).items()):
            if key not in reads:
                known = key in declared.form | declared.query
                problems.append({"loc": (where, key), "msg": misplaced if known else "not a field of this endpoint",
                                 "type": "unknown"})
            elif count > 1 and not (where == "body" and key in MULTI_VALUED):
                problems.append({"loc": (where, key), "msg": "given more than once", "type": "repeated"})
    empty = {key for key, value in form.multi_items() if value == "" and key in declared.form}
    problems += [{"loc": ("body", key), "msg": "given empty", "type": "empty"} for key in sorted(empty)]
    if problems:
        raise RequestValidationError(problems)
