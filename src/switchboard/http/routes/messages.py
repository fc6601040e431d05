"""``POST /v1/messages`` (Anthropic's Messages API) and ``POST /v1/messages/count_tokens``.

A thin adapter: the request is translated to a chat completion
(:mod:`switchboard.protocol.anthropic_translation`), admitted and settled like one
(:mod:`switchboard.http.metering`), routed by the ``ProviderRouter`` and answered as a message or
a stream of Anthropic's named events. Every error on these routes, including a bad key and a
body that fails validation (a 400 here, not FastAPI's 422), is Anthropic's error body
(``MessagesRoute``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from switchboard.gateway.accounting import RequestClock
from switchboard.gateway.router import ProviderRouter, RoutedStream
from switchboard.governance.governor import Admission
from switchboard.http import metering
from switchboard.http.auth import principal
from switchboard.http.body_limits import CheckedRoute, header_list
from switchboard.http.errors import APIError, to_api_error
from switchboard.http.routes.chat import DEPLOYMENT_HEADER, IGNORED_HEADER, until_disconnected
from switchboard.protocol.anthropic_messages import (
    AnthropicErrorResponse,
    CountTokensRequest,
    CountTokensResponse,
    Message,
    MessagesRequest,
)
from switchboard.protocol.anthropic_translation import (
    MessageStream,
    UntranslatableRequest,
    to_chat_body,
    to_message,
)
from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.serving import ChatRun, ChatService
from switchboard.serving.catalog import LocalModel
from switchboard.serving.chat import started_runs

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
          403: "permission_error", 404: "not_found_error", 413: "request_too_large",
          422: "invalid_request_error", 429: "rate_limit_error", 529: "overloaded_error"}


def error_body(error: APIError) -> dict[str, Any]:
    """Anthropic's ``{"type": "error", "error": {"type", "message"}}`` for an ``APIError``."""
    kind = "overloaded_error" if error.type == "server_overloaded" else _TYPES.get(
        error.status, "api_error" if error.status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def error_response(error: APIError) -> Response:
    return Response(orjson.dumps(error_body(error)), status_code=error.status,
                    media_type="application/json", headers=error.headers)


def invalid(errors: list[Any]) -> APIError:
    """A 400 naming the first failing field (``messages.0.content: Field required``)."""
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    message = str(first.get("msg", "invalid request"))
    return APIError(400, f"{where}: {message}" if where else message)


class MessagesRoute(CheckedRoute):
    """Answers whatever fails on these routes, its dependencies (the API key) included, in
    Anthropic's error format; the rest of the API keeps OpenAI's."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def in_anthropic_format(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError as exc:
                return error_response(invalid(list(exc.errors())))
            except StarletteHTTPException as exc:
                return error_response(APIError(exc.status_code, str(exc.detail),
                                               headers=dict(exc.headers or {})))
            except Exception as exc:  # noqa: BLE001 - every failure becomes Anthropic's body
                return error_response(to_api_error(exc))

        return in_anthropic_format


router = APIRouter(tags=["messages"], route_class=MessagesRoute)


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": AnthropicErrorResponse,
                     "description": f"Anthropic error ({_TYPES.get(status, 'api_error')})"}
            for status in statuses}


@router.post(
    "/v1/messages",
    response_model=Message,
    summary="Create a message (Anthropic's Messages API)",
    responses={
        200: {"description": "A message, or (with `stream`) an SSE stream of Anthropic's named "
              "events", "content": {"text/event-stream": {}}},
        **_responses(400, 401, 403, 404, 413, 429, 500, 502, 503, 504),
        # declared so that FastAPI does not add its 422: validation failures are 400s here
        "4XX": {"model": AnthropicErrorResponse, "description": "Any other client error"},
    },
)
async def create_message(body: MessagesRequest, request: Request) -> Response:
    gateway: ProviderRouter = request.app.state.router
    # the stop sequences the answer's text will end with when one matched: only local models
    # keep them (include_stop_str_in_output); an upstream's match is reported as end_turn
    kept = (list(body.stop_sequences)
            if body.stop_sequences and _all_local(gateway, body.model) else [])
    chat, raw = _chat_request(body, keep_stop=bool(kept))
    headers = {IGNORED_HEADER: header_list(body.ignored_params)} if body.ignored_params else {}
    try:
        admission = await metering.admit(request, chat, raw, endpoint="messages")
    except APIError as error:
        error.headers.update(headers)
        return error_response(error)
    headers.update(admission.headers)
    runs: list[ChatRun] = []  # the local runs started for it, charged if the client hangs up
    clock = RequestClock()
    listed = started_runs.set(runs)
    try:
        if chat.stream:
            stream = await until_disconnected(gateway.stream(chat, raw, include_usage=True),
                                              request)
        else:
            answer = await until_disconnected(gateway.complete(chat, raw), request)
    except Exception as exc:  # noqa: BLE001 - every failure becomes an error body
        error = to_api_error(exc)
        await admission.finish(metering.failed(error))
        error.headers.update(headers)
        return error_response(error)
    finally:
        started_runs.reset(listed)
    if (stream if chat.stream else answer) is None:  # the client left; its attempts cancelled
        await admission.finish(metering.cut_off(request, raw, chat.model, None, runs, clock))
        return Response(status_code=499)
    if chat.stream:
        headers.update({"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                        DEPLOYMENT_HEADER: stream.deployment.id})
        frames = _frames(stream, MessageStream(body.model, kept), admission)
        return StreamingResponse(frames, media_type="text/event-stream", headers=headers,
                                 background=BackgroundTask(metering.close_stream, stream,
                                                           admission))
    await admission.finish(metering.answered(answer))
    headers[DEPLOYMENT_HEADER] = answer.deployment.id
    message = to_message(answer.completion, body.model, kept)
    return Response(message.model_dump_json().encode(), media_type="application/json",
                    headers=headers)


@router.post(
    "/v1/messages/count_tokens",
    response_model=CountTokensResponse,
    summary="Count a message request's input tokens",
    responses={**_responses(400, 401, 403, 404, 413, 503),
               "4XX": {"model": AnthropicErrorResponse, "description": "Any other client error"}},
)
async def count_tokens(body: CountTokensRequest, request: Request) -> CountTokensResponse:
    """Exact for a local model (its template and tokenizer); an estimate for an upstream."""
    gateway: ProviderRouter = request.app.state.router
    chat, raw = _chat_request(body)
    names = gateway.public_names(chat.model)
    key = principal(request).key
    if key is not None and not key.allows(*names):
        raise APIError(403, f"This API key may not use the model {chat.model!r}.",
                       type="permission_error")
    route = gateway.resolve(chat.model)
    dep = gateway.deployments[route.deployments[0]]
    if dep.kind != "local":
        return CountTokensResponse(input_tokens=metering.prompt_estimate(gateway, raw))
    model = request.app.state.catalog.get(dep.id)
    tokens = await asyncio.to_thread(_local_prompt_tokens, chat, model)
    return CountTokensResponse(input_tokens=tokens)


def _local_prompt_tokens(chat: ChatCompletionRequest, model: LocalModel) -> int:
    """The prompt's tokens exactly as a generation would prepare them (worker thread)."""
    # serving has no public "prompt tokens of a request" yet; _prepare is what generation runs
    return len(ChatService._prepare(chat, model).tokens)


def _chat_request(body: MessagesRequest | CountTokensRequest, keep_stop: bool = False
                  ) -> tuple[ChatCompletionRequest, dict[str, Any]]:
    """The chat completion a message request is (400 when it has none)."""
    try:
        raw = to_chat_body(body, keep_stop)
        return ChatCompletionRequest.model_validate(raw), raw
    except UntranslatableRequest as exc:
        raise APIError(400, f"{exc.param}: {exc}", param=exc.param) from exc
    except ValidationError as exc:
        raise invalid(list(exc.errors(include_url=False))) from exc


def _all_local(gateway: ProviderRouter, model: str) -> bool:
    """Whether every deployment the model may reach is local (which can keep stop strings)."""
    try:
        return all(dep.kind == "local" for dep, _ in metering.reachable(gateway, model, None))
    except Exception:  # noqa: BLE001 - unknown model: admission answers it
        return False


def _frame(event: BaseModel | dict[str, Any]) -> bytes:
    data = event if isinstance(event, dict) else event.model_dump(mode="json")
    return b"event: " + str(data["type"]).encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def _frames(stream: RoutedStream, translator: MessageStream,
                  admission: Admission) -> AsyncIterator[bytes]:
    """The stream's chunks as Anthropic's events; a failure after the start is an ``error``
    event."""
    try:
        async for event in stream:
            for out in translator.feed(event.chunk):
                yield _frame(out)
        for out in translator.end():
            yield _frame(out)
    except Exception as exc:  # noqa: BLE001 - reported to the client in-band
        yield _frame(error_body(to_api_error(exc)))
    finally:
        await metering.close_stream(stream, admission)

