"""``POST /v1/messages`` (Anthropic's Messages API) and ``POST /v1/messages/count_tokens``.

A thin adapter: the request is translated to a chat completion
(:mod:`switchboard.protocol.anthropic_translation`), run by the ``Pipeline`` like any other (admit,
route, settle) and answered as a message or a stream of Anthropic's named events. Every error on
these routes, including a bad key and a body that fails validation (a 400 here, not FastAPI's
422), is Anthropic's error body (``MessagesRoute``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from switchboard.errors import APIError
from switchboard.gateway.router import ProviderRouter
from switchboard.http.body_limits import CheckedRoute
from switchboard.http.caller import caller_of
from switchboard.http.errors import to_api_error
from switchboard.http.routes.chat import STREAM_HEADERS, ignored_params_headers
from switchboard.pipeline import Pipeline, Streaming
from switchboard.pipeline.admission import reachable
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
    chat = _chat_request(body, keep_stop=bool(kept))
    pipeline: Pipeline = request.app.state.pipeline
    headers = ignored_params_headers(body)
    try:
        result = await pipeline.generate(chat, caller_of(request), endpoint="messages",
                                         include_usage=True, headers=headers)
    except APIError as error:
        return error_response(error)
    if result is None:  # the client left; its attempts were cancelled and it was charged
        return Response(status_code=499)
    if isinstance(result, Streaming):
        frames = _frames(result, MessageStream(body.model, kept))
        return StreamingResponse(frames, media_type="text/event-stream",
                                 headers={**result.headers, **STREAM_HEADERS},
                                 background=BackgroundTask(result.close))
    message = to_message(result.completion, body.model, kept)
    return Response(message.model_dump_json().encode(), media_type="application/json",
                    headers=result.headers)


@router.post(
    "/v1/messages/count_tokens",
    response_model=CountTokensResponse,
    summary="Count a message request's input tokens",
    responses={**_responses(400, 401, 403, 404, 413, 503),
               "4XX": {"model": AnthropicErrorResponse, "description": "Any other client error"}},
)
async def count_tokens(body: CountTokensRequest, request: Request) -> CountTokensResponse:
    """Exact for a local model (its template and tokenizer); an estimate for an upstream."""
    pipeline: Pipeline = request.app.state.pipeline
    counted = await pipeline.prompt_tokens(_chat_request(body), caller_of(request))
    return CountTokensResponse(input_tokens=counted if isinstance(counted, int)
                               else len(counted))


def _chat_request(body: MessagesRequest | CountTokensRequest,
                  keep_stop: bool = False) -> ChatCompletionRequest:
    """The chat completion a message request is (400 when it has none)."""
    try:
        return ChatCompletionRequest.model_validate(to_chat_body(body, keep_stop))
    except UntranslatableRequest as exc:
        raise APIError(400, f"{exc.param}: {exc}", param=exc.param) from exc
    except ValidationError as exc:
        raise invalid(list(exc.errors(include_url=False))) from exc


def _all_local(gateway: ProviderRouter, model: str) -> bool:
    """Whether every deployment the model may reach is local (which can keep stop strings)."""
    try:
        return all(dep.kind == "local" for dep, _ in reachable(gateway, model, None))
    except Exception:  # noqa: BLE001 - unknown model: admission answers it
        return False


def _frame(event: BaseModel | dict[str, Any]) -> bytes:
    data = event if isinstance(event, dict) else event.model_dump(mode="json")
    return b"event: " + str(data["type"]).encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def _frames(stream: Streaming, translator: MessageStream) -> AsyncIterator[bytes]:
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
        await stream.close()

