"""``POST /v1/embeddings`` (also ``/embeddings`` and Telnyx's ``/v2/ai/openai/embeddings``):
OpenAI's embeddings, from the embedded all-MiniLM-L6-v2 or, for any other model name, from the
model's upstream deployments through the gateway (retries, fallbacks, cooldowns as for chat).
Governed like chat: the key's models, limits and the ledger."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from switchboard.http.body_limits import CheckedRoute
from switchboard.http.caller import caller_of
from switchboard.http.openapi import error_responses
from switchboard.pipeline import Pipeline
from switchboard.protocol.embeddings import EmbeddingList, EmbeddingRequest

router = APIRouter(tags=["embeddings"], route_class=CheckedRoute)


@router.post("/v1/embeddings", response_model=EmbeddingList, summary="Create embeddings",
             responses=error_responses(400, 403, 404, 429, 502, 503, 504))
@router.post("/embeddings", response_model=EmbeddingList, include_in_schema=False)
@router.post("/v2/ai/openai/embeddings", response_model=EmbeddingList, include_in_schema=False)
async def create_embeddings(body: EmbeddingRequest, request: Request) -> Response:
    pipeline: Pipeline = request.app.state.pipeline
    answer = await pipeline.embed(body, caller_of(request))
    if answer is None:  # the client left; the upstream call was cancelled
        return Response(status_code=499)
    return Response(orjson.dumps(answer.completion, option=orjson.OPT_SERIALIZE_NUMPY),
                    media_type="application/json", headers=answer.headers)
