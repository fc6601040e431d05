"""``GET /health``: 200 ``{"status": "healthy"}`` (LLMstudio's check) once the local models are
loaded, with engine and deployment state; 503 with an error body before. No key."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from switchboard.gateway.router import ProviderRouter
from switchboard.http.body_limits import CheckedRoute
from switchboard.http.errors import APIError, error_response
from switchboard.http.openapi import error_responses
from switchboard.serving import ModelCatalog

router = APIRouter(tags=["health"], route_class=CheckedRoute)


@router.get("/health", summary="Readiness", responses=error_responses(503))
async def health(request: Request) -> JSONResponse:
    catalog: ModelCatalog = request.app.state.catalog
    if catalog.load_error:
        return error_response(APIError(
            503, f"model failed to load: {catalog.load_error}", "server_error", code="model_error"
        ))
    if not catalog.ready:
        error = APIError(
            503, "Loading model", "unavailable_error", code="model_loading",
            headers={"Retry-After": "1"},
        )
        return error_response(error)
    models = {m.id: m.engine.stats() for m in catalog.list()}
    gateway: ProviderRouter = request.app.state.router
    now = time.monotonic()
    deployments = {
        d.id: {"provider": d.kind, "in_flight": d.in_flight, "cooling_down": d.cooling(now)}
        for d in gateway.deployments.values()
    }
    return JSONResponse({"status": "healthy", "models": models, "deployments": deployments})
