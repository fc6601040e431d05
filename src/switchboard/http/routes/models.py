"""``GET /v1/models`` and ``GET /v1/models/{id}``: the public model names (aliases resolve);
a key limited to some models sees only those (another model's card is a 404, as for a model that
does not exist). Also at Telnyx's base paths (``/v2/ai``, ``/v2/ai/openai``), with Telnyx's list
of embedding models."""

from __future__ import annotations

from fastapi import APIRouter, Request

from switchboard.gateway.config import ModelRoute
from switchboard.gateway.router import ProviderRouter
from switchboard.http.auth import principal
from switchboard.http.body_limits import CheckedRoute
from switchboard.protocol.responses import ErrorResponse, ModelCard, ModelList
from switchboard.retrieval.encoder import MAX_TOKENS
from switchboard.retrieval.service import EmbeddingService
from switchboard.serving import ModelCatalog, ModelNotFound, ModelsLoading

router = APIRouter(tags=["models"], route_class=CheckedRoute)


def _card(route: ModelRoute, request: Request, name: str | None = None) -> ModelCard:
    """A model's card; a model served locally tells its context length and file time."""
    gateway: ProviderRouter = request.app.state.router
    catalog: ModelCatalog = request.app.state.catalog
    created, context = gateway.created, None
    for dep_id in route.deployments:
        if gateway.deployments[dep_id].kind == "local":
            try:
                local = catalog.get(dep_id)
            except (ModelNotFound, ModelsLoading):
                continue
            created, context = local.created, local.context_length
            break
    return ModelCard(id=name or route.name, created=created, owned_by=route.owned_by,
                     context_length=context)


@router.get("/v1/models", response_model=ModelList, summary="List models")
@router.get("/models", response_model=ModelList, include_in_schema=False)
@router.get("/v2/ai/models", response_model=ModelList, include_in_schema=False)
@router.get("/v2/ai/openai/models", response_model=ModelList, include_in_schema=False)
async def list_models(request: Request) -> ModelList:
    gateway: ProviderRouter = request.app.state.router
    key = principal(request).key
    cards = [_card(route, request) for route in gateway.config.models
             if key is None or key.allows(route.name, *route.aliases)]
    embeddings: EmbeddingService = request.app.state.embeddings
    if key is None or key.allows(*embeddings.aliases):
        cards.append(_embedding_card(embeddings))
    return ModelList(data=cards)


@router.get("/v2/ai/openai/embeddings/models", response_model=ModelList,
            summary="Telnyx: the embedding models")
async def list_embedding_models(request: Request) -> ModelList:
    embeddings: EmbeddingService = request.app.state.embeddings
    key = principal(request).key
    allowed = key is None or key.allows(*embeddings.aliases)
    return ModelList(data=[_embedding_card(embeddings)] if allowed else [])


def _embedding_card(embeddings: EmbeddingService, name: str | None = None) -> ModelCard:
    return ModelCard(id=name or embeddings.model_id, created=embeddings.created,
                     owned_by="switchboard", context_length=MAX_TOKENS)


@router.get(
    "/v1/models/{model_id:path}",
    response_model=ModelCard,
    responses={404: {"model": ErrorResponse}},
    summary="Retrieve a model",
)
@router.get("/models/{model_id:path}", response_model=ModelCard, include_in_schema=False)
@router.get("/v2/ai/models/{model_id:path}", response_model=ModelCard, include_in_schema=False)
@router.get("/v2/ai/openai/models/{model_id:path}", response_model=ModelCard,
            include_in_schema=False)
async def get_model(model_id: str, request: Request) -> ModelCard:
    gateway: ProviderRouter = request.app.state.router
    embeddings: EmbeddingService = request.app.state.embeddings
    key = principal(request).key
    if model_id in embeddings.aliases and model_id not in gateway.routes:
        if key is not None and not key.allows(*embeddings.aliases):
            raise ModelNotFound(model_id)
        return _embedding_card(embeddings, model_id)
    route = gateway.routes.get(model_id)  # by name only: "" is not the default model here
    if route is None or (key is not None and not key.allows(route.name, *route.aliases)):
        raise ModelNotFound(model_id)
    return _card(route, request, model_id)
