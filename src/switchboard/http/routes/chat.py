"""``POST /v1/chat/completions`` (also at ``/chat/completions``, at Telnyx's
``/v2/ai/chat/completions`` and ``/v2/ai/openai/chat/completions`` and, for dedicated deployments,
``/deployments/{id}/v1/chat/completions``): validate, hand to the router, respond."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask

from switchboard.gateway.accounting import RequestClock
from switchboard.gateway.providers.base import StreamEvent
from switchboard.gateway.router import ProviderRouter
from switchboard.http import metering
from switchboard.http.auth import principal
from switchboard.http.body_limits import CheckedRoute, header_list
from switchboard.http.errors import APIError, to_api_error
from switchboard.http.sse import sse_stream
from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.protocol.responses import (
    ChatCompletion,
    ErrorResponse,
    ValidationErrorResponse,
)
from switchboard.retrieval.augment import Retrieval, augment, retrieval_tools
from switchboard.serving import ChatRun
from switchboard.serving.chat import started_runs

IGNORED_HEADER = "x-switchboard-ignored-params"
DEPLOYMENT_HEADER = "x-switchboard-deployment"
T = TypeVar("T")

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
    gateway: ProviderRouter = request.app.state.router
    raw = await request.json()
    headers = ignored_params_headers(body)  # before admission: nothing can fail after it
    try:
        admission = await metering.admit(request, body, raw, deployment)
    except APIError as error:
        error.headers.update(headers)
        return error.response()
    headers.update(admission.headers)
    found: Retrieval | None = None
    runs: list[ChatRun] = []  # the local runs started for it, charged if the client hangs up
    clock = RequestClock()
    listed = started_runs.set(runs)  # the tasks of until_disconnected start with this context
    try:
        if retrieval_tools(body):
            body, raw, found = await augment(request.app.state.buckets, principal(request),
                                             body, raw)
        if body.stream:  # until the first event: retries, backoffs, an upstream's keep-alives
            stream = await until_disconnected(
                gateway.stream(body, raw, deployment, include_usage=body.include_usage), request)
        else:
            answer = await until_disconnected(gateway.complete(body, raw, deployment), request)
    except Exception as exc:  # noqa: BLE001 - every failure becomes an OpenAI error body
        error = to_api_error(exc)
        await admission.finish(metering.failed(error))
        error.headers.update(headers)
        return error.response()
    finally:
        started_runs.reset(listed)
    if (stream if body.stream else answer) is None:  # the client left; its attempts are cancelled
        await admission.finish(metering.cut_off(request, raw, body.model, deployment, runs,
                                                clock))
        return Response(status_code=499)
    if body.stream:
        headers.update({"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                        DEPLOYMENT_HEADER: stream.deployment.id})

        async def closed() -> None:
            await metering.close_stream(stream, admission)

        events = stream if found is None else with_last(stream, {"retrieval": found.report()})
        frames = sse_stream(events, lambda exc: to_api_error(exc).body(), closed)
        # `closed` again afterwards (a no-op if the frames ran it): a client already gone when
        # the response starts cancels it before the frames' generator runs at all
        return StreamingResponse(frames, media_type="text/event-stream", headers=headers,
                                 background=BackgroundTask(closed))
    await admission.finish(metering.answered(answer))
    if found is not None:
        answer.completion["retrieval"] = found.report()
    headers[DEPLOYMENT_HEADER] = answer.deployment.id
    return Response(orjson.dumps(answer.completion), media_type="application/json",
                    headers=headers)


def ignored_params_headers(body: ChatCompletionRequest) -> dict[str, str]:
    """``x-switchboard-ignored-params`` naming the fields this server does not know; names a
    header cannot carry (non-Latin-1, CR, LF, commas) are percent-encoded."""
    return {IGNORED_HEADER: header_list(body.ignored_params)} if body.ignored_params else {}


async def with_last(events: AsyncIterator[StreamEvent],
                    extra: dict[str, Any]) -> AsyncIterator[StreamEvent]:
    """The events, the last one carrying ``extra`` fields (re-serialized)."""
    held: StreamEvent | None = None
    async for event in events:
        if held is not None:
            yield held
        held = event
    if held is not None:
        yield StreamEvent({**held.chunk, **extra})


async def until_disconnected(work: Awaitable[T], request: Request) -> T | None:
    """Await ``work``; if the client goes away first, cancel it (freeing its sequences or its
    upstream connection) and return ``None``."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    await asyncio.wait({task})  # its cleanup (in-flight count, upstream connection) is done
    return None


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
