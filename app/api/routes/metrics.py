"""GET /metrics: Prometheus' scrape target (app.core.metrics)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.api.deps import MetricsCaller, RuntimeDep
from app.api.routes.faces import AUTH_ERRORS
from app.core import metrics

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response, responses={
    200: {"content": {"text/plain": {}}, "description": "Prometheus' text exposition format"}, **AUTH_ERRORS})
def scrape(runtime: RuntimeDep, _: MetricsCaller) -> Response:
    """The service's metrics, for Prometheus. Scope: metrics (or admin). Prometheus sends the key as
    `Authorization: Bearer <key>` (deploy/prometheus.yml); X-API-Key works too."""
    runtime.refresh_gauges()  # this process's states as of now; other workers' as of their last refresh
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
