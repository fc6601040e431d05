"""``POST /v1/chat/completions`` (also at ``/chat/completions``): translate, run, respond."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from switchboard.http.errors import to_api_error
from switchboard.http.sse import sse_stream
from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.protocol.responses import ChatCompletion, ErrorResponse, ValidationErrorResponse
from switchboard.serving import ChatRun, ChatService

IGNORED_HEADER = "x-switchboard-ignored-params"

router = APIRouter(tags=["chat"])

_responses: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A chat completion, or an SSE stream of chunks when `stream` is true.",
        "content": {"text/event-stream": {}},
    },
    400: {"model": ErrorResponse},
    401: {"model": ErrorResponse},
    404: {"model": ErrorResponse},
    422: {"model": ValidationErrorResponse},
    429: {"model": ErrorResponse},
    503: {"model": ErrorResponse},
}


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses=_responses,
    summary="Create a chat completion",
)
@router.post("/chat/completions", response_model=ChatCompletion, include_in_schema=False)
async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
    service: ChatService = request.app.state.chat
    headers = {}
    if body.ignored_params:
        headers[IGNORED_HEADER] = ",".join(body.ignored_params)
    try:
        run = await service.start(body)
    except Exception as exc:  # noqa: BLE001 - every failure becomes an OpenAI error body
        error = to_api_error(exc)
        error.headers.update(headers)
        return error.response()
    if body.stream:
        stream = sse_stream(
            service.stream(run),
            on_error=lambda exc: to_api_error(exc).body(),
            on_close=run.cancel,
        )
        headers.update({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return StreamingResponse(stream, media_type="text/event-stream", headers=headers)
    completion = await _collect_unless_disconnected(service, run, request)
    if completion is None:
        return Response(status_code=499)
    if isinstance(completion, Exception):
        error = to_api_error(completion)
        error.headers.update(headers)
        return error.response()
    return JSONResponse(completion.model_dump(mode="json"), headers=headers)


async def _collect_unless_disconnected(
    service: ChatService, run: ChatRun, request: Request
) -> ChatCompletion | Exception | None:
    """Collect the completion; if the client goes away first, cancel it and return ``None``."""
    work = asyncio.ensure_future(service.collect(run))
    watcher = asyncio.ensure_future(_wait_disconnect(request))
    try:
        done, _ = await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if work in done:
        exc = work.exception()
        return exc if isinstance(exc, Exception) else work.result()
    work.cancel()
    run.cancel()
    return None


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
