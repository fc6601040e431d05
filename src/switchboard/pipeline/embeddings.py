"""Embeddings through the same admission and settlement as generation: the embedded
all-MiniLM-L6-v2 for its names, any other model through the ``ProviderRouter`` (retries,
fallbacks, cooldowns as for chat). The answer is OpenAI's embeddings list with ``metrics``."""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING, Any, NoReturn

from switchboard.errors import APIError, ModelNotFound
from switchboard.governance.governor import Admission, Outcome
from switchboard.pipeline.disconnect import until_gone
from switchboard.pipeline.failures import to_api_error
from switchboard.protocol.embeddings import EmbeddingRequest
from switchboard.retrieval import TokenIdsTooLarge
from switchboard.retrieval.service import (
    EmbeddingInputTooLarge,
    EmbeddingModelLoading,
    EmbeddingService,
)

if TYPE_CHECKING:
    from switchboard.pipeline.pipeline import Caller, Pipeline

ENDPOINT = "embeddings"


async def embed(pipeline: Pipeline, service: EmbeddingService, request: EmbeddingRequest,
                caller: Caller) -> tuple[dict[str, Any], str, dict[str, str]] | None:
    """The embeddings list, the deployment that made it and the headers to send; ``None`` when
    the client left first. Raises ``APIError`` (settled)."""
    if service.serves(request.model):
        return await _local(pipeline, service, request, caller)
    gateway = pipeline.router
    try:
        names = gateway.public_names(request.model)
    except ModelNotFound as exc:
        raise APIError(404, f"The model {request.model!r} does not exist; this server embeds "
                       f"with {service.model_id!r} and the embedding models of its config.",
                       param="model", code="model_not_found") from exc
    body = request.model_dump(mode="json", exclude_unset=True)
    admission = await _admit(pipeline, caller, names, body)
    try:
        answer = await until_gone(gateway.embed(body, request.model), caller.disconnected)
    except Exception as exc:  # noqa: BLE001 - every failure becomes an APIError
        await _fail(admission, to_api_error(exc))
    if answer is None:  # the client left: the upstream call was cancelled
        await admission.finish(Outcome(499, error="the client disconnected"))
        return None
    metrics = answer.completion.get("metrics")
    await admission.finish(Outcome(200, answer.deployment.id, answer.deployment.kind, metrics))
    return answer.completion, answer.deployment.id, dict(admission.headers)


async def _local(pipeline: Pipeline, service: EmbeddingService, request: EmbeddingRequest,
                 caller: Caller) -> tuple[dict[str, Any], str, dict[str, str]]:
    if request.dimensions is not None and request.dimensions != service.encoder_dimensions():
        raise APIError(400, f"{service.model_id} makes {service.encoder_dimensions()}-"
                       "dimensional embeddings; 'dimensions' cannot change that.",
                       param="dimensions", code="unsupported_parameter")
    admission = await _admit(pipeline, caller, list(service.aliases),
                             request.model_dump(mode="json", exclude={"input"}))
    texts, tokens = request.texts_or_tokens()
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
                          if request.encoding_format == "base64" else vector)
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    payload = {"object": "list", "data": data, "model": service.model_id,
               "usage": {"prompt_tokens": used, "total_tokens": used}, "metrics": metrics}
    return payload, "local", dict(admission.headers)


async def _admit(pipeline: Pipeline, caller: Caller, names: list[str],
                 body: dict[str, Any]) -> Admission:
    try:
        return await pipeline.governor.admit(
            caller.principal, names[0], names, endpoint=ENDPOINT, request_id=caller.request_id,
            body={k: v for k, v in body.items() if k != "input"})
    except Exception as exc:
        raise to_api_error(exc) from exc


async def _fail(admission: Admission, error: APIError) -> NoReturn:
    """Record the failure and raise it (with the rate-limit headers)."""
    await admission.finish(Outcome(error.status, error=error.message))
    error.headers.update(admission.headers)
    raise error
