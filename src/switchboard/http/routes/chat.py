"""``POST /v1/chat/completions`` (also at ``/chat/completions``, at Telnyx's
``/v2/ai/chat/completions`` and ``/v2/ai/openai/chat/completions`` and, for dedicated deployments,
``/deployments/{id}/v1/chat/completions``): the canonical dialect, handed to the pipeline as is
and answered as a completion or an SSE stream of chunks."""

from __future__ import annotations

from typing import Any, Protocol

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask

from switchboard.errors import APIError
from switchboard.http.body_limits import CheckedRoute, header_list
from switchboard.http.caller import caller_of
from switchboard.http.errors import error_response, to_api_error
from switchboard.http.sse import sse_stream
from switchboard.pipeline import DEPLOYMENT_HEADER, Pipeline, Streaming
from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.protocol.responses import (
    ChatCompletion,
    ErrorResponse,
    ValidationErrorResponse,
)

IGNORED_HEADER = "x-switchboard-ignored-params"


class HasIgnoredParams(Protocol):
    @property
    def ignored_params(self) -> list[str]: ...


STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
__all__ = ["DEPLOYMENT_HEADER", "IGNORED_HEADER", "STREAM_HEADERS", "ignored_params_headers",
           "router"]

router = APIRouter(tags=["chat"], route_class=CheckedRoute)

_responses: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A chat completion (with a `metrics` object), or an SSE stream of chunks "
        "when `stream` is true.",
        "content": {"text/event-stream": {}},
    },
    400: {"model": ErrorResponse},
    401: {"model": ErrorResponse},
    403: {"model": ErrorResponse},
    404: {"model": ErrorResponse},
    422: {"model": ValidationErrorResponse},
    429: {"model": ErrorResponse},
    502: {"model": ErrorResponse},
    503: {"model": ErrorResponse},
    504: {"model": ErrorResponse},
}


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses=_responses,
    summary="Create a chat completion",
)
@router.post("/chat/completions", response_model=ChatCompletion, include_in_schema=False)
@router.post("/v2/ai/chat/completions", response_model=ChatCompletion, include_in_schema=False)
@router.post("/v2/ai/openai/chat/completions", response_model=ChatCompletion,
             include_in_schema=False)
async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
    return await complete(body, request)


@router.post(
    "/deployments/{deployment_id}/v1/chat/completions",
    response_model=ChatCompletion,
    responses=_responses,
    summary="Create a chat completion on one dedicated deployment",
)
@router.post(
    "/deployments/{deployment_id}/chat/completions", response_model=ChatCompletion,
    include_in_schema=False,
)
async def create_dedicated_completion(
    deployment_id: str, body: ChatCompletionRequest, request: Request
) -> Response:
    return await complete(body, request, deployment_id)


async def complete(
    body: ChatCompletionRequest, request: Request, deployment: str | None = None
) -> Response:
    pipeline: Pipeline = request.app.state.pipeline
    try:
        result = await pipeline.generate(body, caller_of(request), deployment=deployment,
                                         headers=ignored_params_headers(body))
    except APIError as error:
        return error_response(error)
    if result is None:  # the client left; its attempts were cancelled and it was charged
        return Response(status_code=499)
    if isinstance(result, Streaming):
        frames = sse_stream(result, lambda exc: to_api_error(exc).body(), result.close)
        # `close` again afterwards (a no-op if the frames ran it): a client already gone when
        # the response starts cancels it before the frames' generator runs at all
        return StreamingResponse(frames, media_type="text/event-stream",
                                 headers={**result.headers, **STREAM_HEADERS},
                                 background=BackgroundTask(result.close))
    return Response(orjson.dumps(result.completion), media_type="application/json",
                    headers=result.headers)


def ignored_params_headers(body: ChatCompletionRequest | HasIgnoredParams) -> dict[str, str]:
    """``x-switchboard-ignored-params`` naming the fields this server does not know (in any
    dialect's request); names a header cannot carry (non-Latin-1, CR, LF, commas) are
    percent-encoded."""
    return {IGNORED_HEADER: header_list(body.ignored_params)} if body.ignored_params else {}
