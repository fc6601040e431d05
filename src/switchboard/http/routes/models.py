"""``GET /v1/models`` and ``GET /v1/models/{id}``."""

from __future__ import annotations

from fastapi import APIRouter, Request

from switchboard.protocol.responses import ErrorResponse, ModelCard, ModelList
from switchboard.serving import LocalModel, ModelCatalog

router = APIRouter(tags=["models"])


def _card(model: LocalModel) -> ModelCard:
    return ModelCard(id=model.id, created=model.created, context_length=model.context_length)


@router.get("/v1/models", response_model=ModelList, summary="List models")
@router.get("/models", response_model=ModelList, include_in_schema=False)
async def list_models(request: Request) -> ModelList:
    catalog: ModelCatalog = request.app.state.catalog
    return ModelList(data=[_card(m) for m in catalog.list()])


@router.get(
    "/v1/models/{model_id:path}",
    response_model=ModelCard,
    responses={404: {"model": ErrorResponse}},
    summary="Retrieve a model",
)
@router.get("/models/{model_id:path}", response_model=ModelCard, include_in_schema=False)
async def get_model(model_id: str, request: Request) -> ModelCard:
    catalog: ModelCatalog = request.app.state.catalog
    return _card(catalog.get(model_id))
