"""LLMstudio's engine API, so LLMstudio users switch without changing code.

``POST /api/engine/chat/{provider}`` takes ``chat_input`` (a string or messages), ``model``,
``is_stream``, ``retries``, ``parameters`` (OpenAI sampling parameters) and ``session_id``; it
answers with the chat completion plus ``chat_input``, ``chat_output``, ``context``, ``provider``,
``timestamp``, ``parameters`` and ``metrics``. Streams are one JSON object per chunk, each
newline-terminated, with ``chat_output_stream`` (this chunk's text) and ``chat_output`` (so far);
the last carries ``metrics``. ``{provider}`` is a deployment kind (``local``,
``openai-compatible`` or its alias ``openai``, ``anthropic``); the model picks the deployment.
A ``retrieval`` tool in ``parameters.tools`` works as in chat completions (``retrieval`` on the
answer, or on the last streamed line).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.background import BackgroundTask

from switchboard.errors import APIError
from switchboard.gateway.router import ProviderRouter
from switchboard.governance.keys import ApiKey
from switchboard.http.auth import principal
from switchboard.http.body_limits import CheckedRoute
from switchboard.http.caller import caller_of
from switchboard.http.errors import error_response, to_api_error
from switchboard.http.openapi import error_responses
from switchboard.http.routes.chat import ignored_params_headers
from switchboard.pipeline import Pipeline, Streaming
from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.protocol.limits import MAX_MESSAGES, at_most
from switchboard.protocol.messages import last_user_text

router = APIRouter(prefix="/api/engine", tags=["llmstudio"], route_class=CheckedRoute)
ALIASES = {"openai": "openai-compatible"}


class EngineChatRequest(BaseModel):
    chat_input: Annotated[str | list[dict[str, Any]],
                          at_most(MAX_MESSAGES, "too_many_messages", "messages")]
    model: str
    is_stream: bool = False
    retries: int = Field(default=0, ge=0, le=10)
    parameters: dict[str, Any] = Field(default_factory=dict)
    session_id: str | None = None


def _providers(gateway: ProviderRouter, key: ApiKey | None = None) -> dict[str, list[str]]:
    """Provider kind -> public model names served (at least partly) by that kind; with ``key``,
    only the models it may use (and the kinds that serve them)."""
    found: dict[str, list[str]] = {}
    for route in gateway.config.models:
        if key is not None and not key.allows(route.name, *route.aliases):
            continue
        for dep_id in route.deployments:
            kind = gateway.deployments[dep_id].kind
            names = found.setdefault(kind, [])
            if route.name not in names:
                names.append(route.name)
    return found


def _check_provider(gateway: ProviderRouter, provider: str) -> str:
    kinds = _providers(gateway)
    kind = ALIASES.get(provider, provider)
    if kind not in kinds:
        known = ", ".join(sorted(kinds) + [a for a, k in ALIASES.items() if k in kinds])
        raise APIError(404, f"unknown provider {provider!r}; this server has: {known}",
                       param="provider", code="provider_not_found")
    return kind


@router.get("/providers", summary="Providers (deployment kinds) this server routes to")
async def providers(request: Request) -> list[str]:
    return list(_providers(request.app.state.router, principal(request).key))


@router.get("/models", summary="Models by provider", responses=error_responses(404))
async def models(request: Request, provider: str | None = None) -> dict[str, Any]:
    gateway: ProviderRouter = request.app.state.router
    listing = {kind: {"name": kind, "models": names}
               for kind, names in _providers(gateway, principal(request).key).items()}
    if provider is None:
        return listing
    kind = _check_provider(gateway, provider)
    return listing.get(kind, {"name": kind, "models": []})


@router.post("/chat/{provider}", summary="LLMstudio chat (completion plus metrics)",
             responses=error_responses(400, 403, 404, 429, 502, 503, 504))
async def chat(provider: str, payload: EngineChatRequest, request: Request) -> Response:
    gateway: ProviderRouter = request.app.state.router
    _check_provider(gateway, provider)
    messages = (
        [{"role": "user", "content": payload.chat_input}]
        if isinstance(payload.chat_input, str) else payload.chat_input
    )
    body = {**payload.parameters, "model": payload.model, "messages": messages,
            "stream": payload.is_stream}
    if payload.session_id:
        body["session_id"] = payload.session_id
    try:
        openai_request = ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from exc
    retries = payload.retries or None
    context = {
        "chat_input": payload.chat_input if isinstance(payload.chat_input, str)
        else last_user_text(messages),
        "context": messages,
        "parameters": payload.parameters,
        "session_id": payload.session_id,
    }
    pipeline: Pipeline = request.app.state.pipeline
    try:
        answer = await pipeline.generate(
            openai_request, caller_of(request), endpoint="llmstudio", include_usage=True,
            retries=retries, headers=ignored_params_headers(openai_request))
    except APIError as error:
        return error_response(error)
    if answer is None:  # the client left; its attempts were cancelled and it was charged
        return Response(status_code=499)
    if isinstance(answer, Streaming):
        return StreamingResponse(_lines(answer, context), media_type="application/json",
                                 headers=answer.headers, background=BackgroundTask(answer.close))
    completion = answer.completion
    message = completion["choices"][0]["message"] if completion.get("choices") else {}
    result = {
        **completion,
        **context,
        "chat_output": message.get("content") or "",
        "chat_output_stream": "",
        "provider": answer.provider,
        "deployment": answer.deployment,
        "timestamp": time.time(),
    }
    return Response(orjson.dumps(result), media_type="application/json", headers=answer.headers)


async def _lines(stream: Streaming, context: dict[str, Any]) -> AsyncIterator[bytes]:
    """One JSON object per chunk, newline-terminated; errors in-band as ``{"error": …}``."""
    output: list[str] = []
    try:
        async for event in stream:
            chunk = event.chunk
            text = "".join(
                (c.get("delta") or {}).get("content") or "" for c in chunk.get("choices") or ()
            )
            output.append(text)
            yield orjson.dumps({
                **chunk, **context,
                "chat_output": "".join(output),
                "chat_output_stream": text,
                "provider": stream.provider,
                "timestamp": time.time(),
            }) + b"\n"
    except Exception as exc:  # noqa: BLE001
        yield orjson.dumps(to_api_error(exc).body()) + b"\n"
    finally:
        await stream.close()

