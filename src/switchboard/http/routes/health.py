"""``GET /health``: 200 once the models are loaded, 503 with an error body before. No key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from switchboard.http.errors import APIError
from switchboard.serving import ModelCatalog

router = APIRouter(tags=["health"])


@router.get("/health", summary="Readiness")
async def health(request: Request) -> JSONResponse:
    catalog: ModelCatalog = request.app.state.catalog
    if catalog.load_error:
        return APIError(
            503, f"model failed to load: {catalog.load_error}", "server_error", code="model_error"
        ).response()
    if not catalog.ready:
        error = APIError(
            503, "Loading model", "unavailable_error", code="model_loading",
            headers={"Retry-After": "1"},
        )
        return error.response()
    models = {m.id: m.engine.stats() for m in catalog.list()}
    return JSONResponse({"status": "ok", "models": models})
