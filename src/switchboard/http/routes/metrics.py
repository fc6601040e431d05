"""``GET /metrics``: Prometheus text format (no key, like vLLM's; it holds no secrets)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse

from switchboard.http.body_limits import CheckedRoute
from switchboard.serving import ServingMetrics
from switchboard.serving.metrics import CONTENT_TYPE

router = APIRouter(tags=["health"], route_class=CheckedRoute)


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
async def prometheus_metrics(request: Request) -> Response:
    metrics: ServingMetrics = request.app.state.metrics
    return Response(metrics.render(), media_type=CONTENT_TYPE)
