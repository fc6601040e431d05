"""``POST /v1/embeddings`` (also ``/embeddings``): OpenAI's embeddings on the embedded
all-MiniLM-L6-v2, governed like chat (key's models, limits, ledger)."""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from switchboard.governance.governor import Governor, Outcome
from switchboard.http.auth import principal
from switchboard.http.errors import APIError, to_api_error
from switchboard.http.request_id import current_request_id
from switchboard.protocol.embeddings import EmbeddingList, EmbeddingRequest
from switchboard.protocol.responses import ErrorResponse
from switchboard.retrieval import TokenIdsTooLarge
from switchboard.retrieval.service import EmbeddingModelLoading, EmbeddingService

router = APIRouter(tags=["embeddings"])


@router.post("/v1/embeddings", response_model=EmbeddingList, summary="Create embeddings",
             responses={400: {"model": ErrorResponse}, 404: {"model": ErrorResponse},
                        429: {"model": ErrorResponse}, 503: {"model": ErrorResponse}})
@router.post("/embeddings", response_model=EmbeddingList, include_in_schema=False)
async def create_embeddings(body: EmbeddingRequest, request: Request) -> Response:
    service: EmbeddingService = request.app.state.embeddings
    governor: Governor = request.app.state.governor
    if not service.serves(body.model):
        raise APIError(404, f"The model {body.model!r} does not exist or is not an embedding "
                       f"model; this server embeds with {service.model_id!r}.",
                       param="model", code="model_not_found")
    if body.dimensions is not None and body.dimensions != service.encoder_dimensions():
        raise APIError(400, f"{service.model_id} makes {service.encoder_dimensions()}-dimensional "
                       "embeddings; 'dimensions' cannot change that.", param="dimensions",
                       code="unsupported_parameter")
    try:
        admission = await governor.admit(
            principal(request), service.model_id, list(service.aliases), endpoint="embeddings",
            request_id=current_request_id.get(), body=body.model_dump(exclude={"input"}),
        )
    except Exception as exc:  # noqa: BLE001
        raise to_api_error(exc) from exc
    texts, tokens = body.texts_or_tokens()
    started = time.perf_counter()
    try:
        vectors, used = await service.embed(texts, tokens)
    except TokenIdsTooLarge as exc:
        error = APIError(400, str(exc), param="input", code="invalid_value")
    except EmbeddingModelLoading as exc:
        error = APIError(503, f"Embedding model not ready: {exc}", type="server_error",
                         code="model_loading", headers={"Retry-After": "1"})
    else:
        error = None
    if error is not None:
        await admission.finish(Outcome(error.status, error=error.message))
        error.headers.update(admission.headers)
        raise error
    latency = time.perf_counter() - started
    metrics = {"input_tokens": used, "output_tokens": 0, "total_tokens": used, "cost_usd": 0.0,
               "latency_s": round(latency, 6), "time_to_first_token_s": round(latency, 6)}
    await admission.finish(Outcome(200, "local", "local", metrics))
    data: list[dict[str, Any]] = []
    for index, vector in enumerate(vectors):
        embedding: Any = (base64.b64encode(vector.astype("<f4").tobytes()).decode()
                          if body.encoding_format == "base64" else vector)
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    payload = {"object": "list", "data": data, "model": service.model_id,
               "usage": {"prompt_tokens": used, "total_tokens": used}}
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
                    media_type="application/json", headers=admission.headers)
