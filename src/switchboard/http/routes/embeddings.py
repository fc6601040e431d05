"""``POST /v1/embeddings`` (also ``/embeddings`` and Telnyx's ``/v2/ai/openai/embeddings``):
OpenAI's embeddings, from the embedded all-MiniLM-L6-v2 or, for any other model name, from the
model's upstream deployments through the gateway (retries, fallbacks, cooldowns as for chat).
Governed like chat: the key's models, limits and the ledger."""

from __future__ import annotations

import base64
import time
from typing import Any, NoReturn

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from switchboard.gateway.router import ProviderRouter
from switchboard.governance.governor import Admission, Governor, Outcome
from switchboard.http.auth import principal
from switchboard.http.body_limits import CheckedRoute
from switchboard.http.errors import APIError, to_api_error
from switchboard.http.openapi import error_responses
from switchboard.http.request_id import current_request_id
from switchboard.http.routes.chat import DEPLOYMENT_HEADER, until_disconnected
from switchboard.protocol.embeddings import EmbeddingList, EmbeddingRequest
from switchboard.retrieval import TokenIdsTooLarge
from switchboard.retrieval.service import (
    EmbeddingInputTooLarge,
    EmbeddingModelLoading,
    EmbeddingService,
)
from switchboard.serving import ModelNotFound

router = APIRouter(tags=["embeddings"], route_class=CheckedRoute)


@router.post("/v1/embeddings", response_model=EmbeddingList, summary="Create embeddings",
             responses=error_responses(400, 403, 404, 429, 502, 503, 504))
@router.post("/embeddings", response_model=EmbeddingList, include_in_schema=False)
@router.post("/v2/ai/openai/embeddings", response_model=EmbeddingList, include_in_schema=False)
async def create_embeddings(body: EmbeddingRequest, request: Request) -> Response:
    service: EmbeddingService = request.app.state.embeddings
    if service.serves(body.model):
        return await _local(body, request, service)
    gateway: ProviderRouter = request.app.state.router
    try:
        names = gateway.public_names(body.model)
    except ModelNotFound as exc:
        raise APIError(404, f"The model {body.model!r} does not exist; this server embeds with "
                       f"{service.model_id!r} and the embedding models of its config.",
                       param="model", code="model_not_found") from exc
    raw = await request.json()
    admission = await _admit(request, names, raw)
    try:
        answer = await until_disconnected(gateway.embed(raw, body.model), request)
    except Exception as exc:  # noqa: BLE001 - every failure becomes an OpenAI error body
        await _fail(admission, to_api_error(exc))
    if answer is None:  # the client left: the upstream call was cancelled
        await _fail(admission, APIError(499, "the client disconnected"))
    metrics = answer.completion.get("metrics")
    await admission.finish(Outcome(200, answer.deployment.id, answer.deployment.kind, metrics))
    return Response(orjson.dumps(answer.completion), media_type="application/json",
                    headers={**admission.headers, DEPLOYMENT_HEADER: answer.deployment.id})


async def _local(body: EmbeddingRequest, request: Request, service: EmbeddingService) -> Response:
    if body.dimensions is not None and body.dimensions != service.encoder_dimensions():
        raise APIError(400, f"{service.model_id} makes {service.encoder_dimensions()}-dimensional "
                       "embeddings; 'dimensions' cannot change that.", param="dimensions",
                       code="unsupported_parameter")
    admission = await _admit(request, list(service.aliases), body.model_dump(exclude={"input"}))
    texts, tokens = body.texts_or_tokens()
    started = time.perf_counter()
    try:
        vectors, used = await service.embed(texts, tokens)
    except (TokenIdsTooLarge, EmbeddingInputTooLarge) as exc:
        await _fail(admission, APIError(400, str(exc), param="input", code="invalid_value"))
    except EmbeddingModelLoading as exc:
        await _fail(admission, APIError(503, f"Embedding model not ready: {exc}",
                                        type="server_error", code="model_loading",
                                        headers={"Retry-After": "1"}))
    latency = round(time.perf_counter() - started, 6)
    metrics = {"input_tokens": used, "output_tokens": 0, "total_tokens": used, "cost_usd": 0.0,
               "latency_s": latency, "time_to_first_token_s": latency}
    await admission.finish(Outcome(200, "local", "local", metrics))
    data: list[dict[str, Any]] = []
    for index, vector in enumerate(vectors):
        embedding: Any = (base64.b64encode(vector.astype("<f4").tobytes()).decode()
                          if body.encoding_format == "base64" else vector)
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    payload = {"object": "list", "data": data, "model": service.model_id,
               "usage": {"prompt_tokens": used, "total_tokens": used}, "metrics": metrics}
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
                    media_type="application/json", headers=admission.headers)


async def _admit(request: Request, names: list[str], body: dict[str, Any]) -> Admission:
    governor: Governor = request.app.state.governor
    try:
        return await governor.admit(principal(request), names[0], names, endpoint="embeddings",
                                    request_id=current_request_id.get(),
                                    body={k: v for k, v in body.items() if k != "input"})
    except Exception as exc:
        raise to_api_error(exc) from exc


async def _fail(admission: Admission, error: APIError) -> NoReturn:
    """Record the failure and raise it (with the rate-limit headers)."""
    await admission.finish(Outcome(error.status, error=error.message))
    error.headers.update(admission.headers)
    raise error
