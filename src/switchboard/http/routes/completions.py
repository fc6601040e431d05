"""``POST /v1/completions`` (OpenAI's legacy text completions, also at ``/completions``) and
vLLM's ``POST /tokenize`` / ``POST /detokenize``.

Completions are a thin adapter: the request is translated to the canonical chat request
(:mod:`switchboard.protocol.completions_translation`), whose raw prompts a local model runs
verbatim and which an upstream receives as one user message; the pipeline admits, routes and
settles it (ledger endpoint ``completions``); the answer or stream is translated back to
``text_completion`` objects. Tokenize and detokenize answer for local models only, check the
key's model list, and are not metered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError
from starlette.background import BackgroundTask

from switchboard.errors import APIError
from switchboard.gateway.providers.base import StreamEvent
from switchboard.http.body_limits import CheckedRoute
from switchboard.http.caller import caller_of
from switchboard.http.errors import error_response, to_api_error
from switchboard.http.routes.chat import STREAM_HEADERS, ignored_params_headers
from switchboard.http.sse import sse_stream
from switchboard.pipeline import Pipeline, Streaming
from switchboard.pipeline.admission import reachable
from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.protocol.completions import (
    Completion,
    CompletionRequest,
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeChatRequest,
    TokenizePromptRequest,
    TokenizeResponse,
)
from switchboard.protocol.completions_translation import (
    CompletionStream,
    UntranslatableRequest,
    to_chat_request,
    to_completion,
    upstream_refusal,
    validation_message,
)
from switchboard.protocol.gateway_section import LOCAL_KIND
from switchboard.protocol.responses import ErrorResponse, ValidationErrorResponse
from switchboard.serving.raw_prompts import spell

router = APIRouter(tags=["completions"], route_class=CheckedRoute)

# A chat request's field names in errors, as a completion request spells them.
_PARAMS = {"messages": "prompt", "top_logprobs": "logprobs", "prompt_logprobs": "logprobs",
           "raw_prompts": "prompt"}

_errors: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 429, 502, 503, 504)
}
_errors[422] = {"model": ValidationErrorResponse}


@router.post(
    "/v1/completions",
    response_model=Completion,
    summary="Create a completion (OpenAI's legacy text completions)",
    responses={200: {"description": "A `text_completion` (with a `metrics` object), or an SSE "
                     "stream of them when `stream` is true.",
                     "content": {"text/event-stream": {}}},
               **_errors},
)
@router.post("/completions", response_model=Completion, include_in_schema=False)
async def create_completion(body: CompletionRequest, request: Request) -> Response:
    pipeline: Pipeline = request.app.state.pipeline
    headers = ignored_params_headers(body)
    try:
        chat = _chat_request(body, pipeline)
        result = await pipeline.generate(chat, caller_of(request), endpoint="completions",
                                         headers=headers)
    except APIError as error:
        error.headers = {**headers, **error.headers}
        return error_response(_as_completion_error(error))
    if result is None:  # the client left; its attempts were cancelled and it was charged
        return Response(status_code=499)
    want_logprobs = body.logprobs is not None
    if isinstance(result, Streaming):
        frames = sse_stream(_completion_chunks(result, CompletionStream(want_logprobs)),
                            lambda exc: _as_completion_error(to_api_error(exc)).body(),
                            result.close)
        # `close` again afterwards (a no-op if the frames ran it): a client already gone when
        # the response starts cancels it before the frames' generator runs at all
        return StreamingResponse(frames, media_type="text/event-stream",
                                 headers={**result.headers, **STREAM_HEADERS},
                                 background=BackgroundTask(result.close))
    return Response(orjson.dumps(to_completion(result.completion, want_logprobs)),
                    media_type="application/json", headers=result.headers)


def _chat_request(body: CompletionRequest, pipeline: Pipeline) -> ChatCompletionRequest:
    """The canonical request (400 naming the field it cannot carry, or one an upstream the
    model may reach could not be sent)."""
    try:
        chat = to_chat_request(body)
    except UntranslatableRequest as exc:
        raise APIError(400, f"{exc.param}: {exc}", param=exc.param,
                       code="unsupported_parameter") from exc
    except ValidationError as exc:
        param, message = validation_message(exc)
        raise _as_completion_error(APIError(400, message, param=param)) from exc
    if not _all_local(pipeline, body.model):
        refusal = upstream_refusal(body)
        if refusal is not None:
            raise APIError(400, f"{refusal.param}: {refusal}", param=refusal.param,
                           code="unsupported_parameter")
    return chat


def _all_local(pipeline: Pipeline, model: str | None) -> bool:
    """Whether every deployment the model may reach runs on this server's engine."""
    try:
        return all(dep.kind == LOCAL_KIND for dep, _ in reachable(pipeline.router, model, None))
    except Exception:  # noqa: BLE001 - an unknown model: admission answers it
        return True


def _as_completion_error(error: APIError) -> APIError:
    """``error`` naming the completion request's field where it names a chat request's."""
    if error.param in _PARAMS:
        error.param = _PARAMS[error.param]
    return error


async def _completion_chunks(stream: Streaming, translator: CompletionStream
                             ) -> AsyncIterator[StreamEvent]:
    async for event in stream:
        chunk = translator.feed(event.chunk)
        if chunk is not None:
            yield StreamEvent(chunk)


# --- /tokenize and /detokenize ---------------------------------------------------------------

_TOKENIZE_ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 403, 404, 503)}


@router.post(
    "/tokenize",
    response_model=TokenizeResponse,
    response_model_exclude_none=True,
    summary="Tokenize a prompt, or messages as a generation renders them (vLLM)",
    responses={**_TOKENIZE_ERRORS, 422: {"model": ValidationErrorResponse}},
)
async def tokenize(body: TokenizePromptRequest | TokenizeChatRequest,
                   request: Request) -> TokenizeResponse:
    pipeline: Pipeline = request.app.state.pipeline
    caller = caller_of(request)
    if isinstance(body, TokenizeChatRequest):
        if not body.add_generation_prompt:
            raise APIError(400, "add_generation_prompt: only true is served (a generation "
                           "always opens the assistant's turn)", param="add_generation_prompt")
        if body.add_special_tokens:
            raise APIError(400, "add_special_tokens: the chat template writes the special "
                           "tokens itself; only false is served", param="add_special_tokens")
        chat = _validated({"model": body.model, "messages": body.model_dump()["messages"],
                           **({"tools": body.model_dump()["tools"]} if body.tools else {})})
    else:
        chat = _validated({"model": body.model,
                           "messages": [{"role": "user", "content": body.prompt}]})
        chat = chat.model_copy(update={"raw_prompts": [body.prompt]})
    model = pipeline.local_model(chat.model, caller)
    tokens = list(await pipeline.local_prompt_tokens(chat, model))
    if isinstance(body, TokenizePromptRequest) and not body.add_special_tokens:
        tokens = await asyncio.to_thread(model.llama.tokenize, body.prompt, False, True)
    strs = [spell(model, [t]) for t in tokens] if body.return_token_strs else None
    return TokenizeResponse(count=len(tokens), max_model_len=model.context_length,
                            tokens=tokens, token_strs=strs)


@router.post(
    "/detokenize",
    response_model=DetokenizeResponse,
    summary="Turn token ids back into text (vLLM)",
    responses={**_TOKENIZE_ERRORS, 422: {"model": ValidationErrorResponse}},
)
async def detokenize(body: DetokenizeRequest, request: Request) -> DetokenizeResponse:
    pipeline: Pipeline = request.app.state.pipeline
    model = pipeline.local_model(body.model, caller_of(request))
    outside = next((t for t in body.tokens if t >= model.llama.n_vocab), None)
    if outside is not None:
        raise APIError(400, f"tokens: token id {outside} is outside the vocabulary",
                       param="tokens")
    return DetokenizeResponse(prompt=spell(model, body.tokens))


def _validated(body: dict[str, Any]) -> ChatCompletionRequest:
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        param, message = validation_message(exc)
        raise APIError(400, message, param=param) from exc
