"""OpenAI's Responses API: ``POST /v1/responses`` (also ``/responses``), ``GET`` and ``DELETE
/v1/responses/{id}`` and ``GET /v1/responses/{id}/input_items``.

A thin adapter: the request (after the stored items of its ``previous_response_id``) is
translated to a chat completion (:mod:`switchboard.protocol.responses_translation`), run by the
``Pipeline`` (ledger endpoint ``responses``) and answered as a response or a stream of the
Responses events (:mod:`switchboard.protocol.responses_stream`). A response is stored unless
``store`` is false (:mod:`switchboard.persistence.responses`), owned by the calling key: another
key's response is a 404, as if it did not exist. If storing fails, the answer still goes out, with
``store: false``. Every failure here is OpenAI's error body; a body that fails validation is a 400
(as OpenAI answers it), not FastAPI's 422.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError
from starlette.background import BackgroundTask

from switchboard.errors import APIError
from switchboard.http.auth import principal
from switchboard.http.body_limits import CheckedRoute
from switchboard.http.caller import caller_of
from switchboard.http.errors import error_response, to_api_error
from switchboard.http.openapi import error_responses
from switchboard.http.routes.chat import STREAM_HEADERS, ignored_params_headers
from switchboard.persistence.responses import ResponseRepository
from switchboard.pipeline import Pipeline, Streaming
from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.protocol.limits import LIMIT_CODES
from switchboard.protocol.responses import ErrorResponse
from switchboard.protocol.responses_api import (
    DeletedResponse,
    InputItemList,
    ResponseObject,
    ResponsesRequest,
    new_id,
)
from switchboard.protocol.responses_stream import ResponseStream
from switchboard.protocol.responses_translation import (
    UntranslatableRequest,
    input_items,
    refusal_of,
    response_shell,
    to_chat_body,
    to_response,
)

log = logging.getLogger(__name__)

SHARED_OWNER = "*"  # the owner of responses made by the admin key or on an open server
# chat-completion parameters, as an error below the translation names them, in Responses terms
RESPONSES_NAMES = {"reasoning_effort": "reasoning.effort", "verbosity": "text.verbosity",
                   "max_completion_tokens": "max_output_tokens", "response_format": "text.format"}
# labels pydantic puts into an error's location for the branch of a union that failed
_UNION_TAGS = frozenset({"message", "function_call", "function_call_output", "input_text",
                         "input_image", "output_text", "refusal", "text", "json_object",
                         "json_schema", "str", "list", "dict", "int", "float", "bool"})


def invalid(errors: list[Any]) -> APIError:
    """A 400 naming the failing field (``input[0].content: …``); a refusal of the protocol's own
    (a built-in tool, an unsupported item, a bound) wins over the union's other attempts."""
    own = [e for e in errors if _own(str(e.get("type", "")))]
    # a value of the wrong type fails every branch of a union: the other errors say more, and
    # the branch that got furthest (the deepest location) is the one the client meant
    telling = sorted((e for e in errors if not str(e.get("type", "")).endswith("_type")),
                     key=lambda e: -len(e.get("loc", ())))
    first = (own or telling or errors or [{}])[0]
    if first.get("type") == "json_invalid":
        return APIError(400, "The body is not valid JSON: "
                        f"{(first.get('ctx') or {}).get('error', 'it cannot be parsed')}.",
                        code="invalid_json")
    param = _param(first.get("loc", ()))
    message = str(first.get("msg", "invalid request"))
    code = first.get("type") if _own(str(first.get("type", ""))) else "invalid_value"
    return APIError(400, f"{param}: {message}" if param else message, param=param, code=code)


def _own(kind: str) -> bool:
    return kind in LIMIT_CODES or kind.startswith("unsupported_")


def _param(loc: tuple[Any, ...] | list[Any]) -> str | None:
    out = ""
    previous: Any = None
    for part in loc:
        if part in ("body", "query", "path") and previous is None:
            continue
        text = str(part)
        # the body's own fields come first; a union's branch follows the field holding it
        union_label = previous is not None and ("[" in text or text[:1].isupper() or (
            text in _UNION_TAGS and (isinstance(previous, int) or previous in (
                "format", "input", "content", "output", "tool_choice"))))
        if not union_label:
            out += f"[{part}]" if isinstance(part, int) else (f".{text}" if out else text)
        previous = part
    return out or None


class ResponsesRoute(CheckedRoute):
    """Validation failures (body and query) are 400s in OpenAI's error format."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def validated(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError as exc:
                return error_response(invalid(list(exc.errors())))

        return validated


router = APIRouter(tags=["responses"], route_class=ResponsesRoute)
# "4XX" is declared so that FastAPI does not add its 422: validation failures are 400s here
_OTHER = {"4XX": {"model": ErrorResponse, "description": "Any other client error"}}
_ERRORS = {**error_responses(400, 403, 404, 429, 500, 502, 503, 504), **_OTHER}
_LOOKUP = {**error_responses(400, 404), **_OTHER}


def owner(request: Request) -> str:
    return principal(request).key_id or SHARED_OWNER


def repository(request: Request) -> ResponseRepository:
    return ResponseRepository(request.app.state.governance.database)


def not_found(response_id: str, param: str | None = None) -> APIError:
    return APIError(404, f"Response with id '{response_id}' not found.", param=param,
                    code="not_found" if param is None else "previous_response_not_found")


@router.post(
    "/v1/responses",
    response_model=ResponseObject,
    summary="Create a model response (OpenAI's Responses API)",
    responses={200: {"description": "A response, or (with `stream`) an SSE stream of the "
                     "Responses events", "content": {"text/event-stream": {}}}, **_ERRORS},
)
@router.post("/responses", response_model=ResponseObject, include_in_schema=False)
async def create_response(body: ResponsesRequest, request: Request) -> Response:
    refusal = refusal_of(body)
    if refusal is not None:
        return error_response(APIError(400, str(refusal), param=refusal.param,
                                       code="unsupported_parameter"))
    repo = repository(request)
    history: list[dict[str, Any]] = []
    if body.previous_response_id:
        previous = await repo.get(owner(request), body.previous_response_id)
        if previous is None:
            return error_response(not_found(body.previous_response_id, "previous_response_id"))
        history = previous.conversation
    items = input_items(body)
    chat = _chat_request(body, [*history, *items])
    pipeline: Pipeline = request.app.state.pipeline
    try:
        result = await pipeline.generate(chat, caller_of(request), endpoint="responses",
                                         include_usage=True,
                                         headers=ignored_params_headers(chat))
    except APIError as error:
        return error_response(_in_responses_terms(error))
    if result is None:  # the client left; its attempts were cancelled and it was charged
        return Response(status_code=499)
    shell = response_shell(body, new_id("resp"), _model_name(pipeline, body))
    store = _Storing(repo, owner(request), [*history, *items]) if body.store is not False else None
    if isinstance(result, Streaming):
        frames = _frames(result, ResponseStream(shell), store)
        return StreamingResponse(frames, media_type="text/event-stream",
                                 headers={**result.headers, **STREAM_HEADERS},
                                 background=BackgroundTask(result.close))
    answer = to_response(result.completion, shell)
    if store is not None and not await store.save(answer):
        answer.store = False
    return Response(orjson.dumps(answer.model_dump(mode="json")), media_type="application/json",
                    headers=result.headers)


@router.get("/v1/responses/{response_id}", response_model=ResponseObject,
            summary="Get a stored response", responses=_LOOKUP)
@router.get("/responses/{response_id}", response_model=ResponseObject, include_in_schema=False)
async def get_response(
    response_id: str, request: Request,
    stream: bool = Query(False, description="Accepted only false: a stored response is "
                         "returned whole."),
    include: list[str] = Query([], description="Accepted only empty: no extra fields exist."),
) -> Response:
    refused = _refused_query(stream=stream, include=include)
    if refused is not None:
        return error_response(refused)
    stored = await repository(request).get(owner(request), response_id)
    if stored is None:
        return error_response(not_found(response_id))
    return Response(orjson.dumps(stored.response), media_type="application/json")


@router.delete("/v1/responses/{response_id}", response_model=DeletedResponse,
               summary="Delete a stored response", responses=_LOOKUP)
@router.delete("/responses/{response_id}", response_model=DeletedResponse,
               include_in_schema=False)
async def delete_response(response_id: str, request: Request) -> Response:
    if not await repository(request).delete(owner(request), response_id):
        return error_response(not_found(response_id))
    return Response(DeletedResponse(id=response_id).model_dump_json(),
                    media_type="application/json")


@router.get("/v1/responses/{response_id}/input_items", response_model=InputItemList,
            summary="List a stored response's input items", responses=_LOOKUP)
@router.get("/responses/{response_id}/input_items", response_model=InputItemList,
            include_in_schema=False)
async def list_input_items(
    response_id: str, request: Request,
    order: Literal["asc", "desc"] = Query("desc", description="Oldest first (asc) or newest "
                                          "first (desc, the default)."),
    limit: int = Query(20, ge=1, le=100, description="Items per page, 1 to 100."),
    after: str | None = Query(None, max_length=128, description="The id of the item to list "
                              "from (exclusive)."),
    include: list[str] = Query([], description="Accepted only empty: no extra fields exist."),
) -> Response:
    refused = _refused_query(include=include)
    if refused is not None:
        return error_response(refused)
    stored = await repository(request).get(owner(request), response_id)
    if stored is None:
        return error_response(not_found(response_id))
    page = InputItemList.page(stored.input_items, order, limit, after)
    return Response(page.model_dump_json(), media_type="application/json")


def _refused_query(stream: bool = False, include: list[str] | None = None) -> APIError | None:
    """A 400 for a query parameter of OpenAI's that cannot be honoured on a stored response."""
    if stream:
        return APIError(400, "'stream' is not supported: a stored response is returned whole",
                        param="stream", code="unsupported_parameter")
    if include:
        return APIError(400, "'include' is not supported: no extra fields exist",
                        param="include", code="unsupported_parameter")
    return None


def _chat_request(body: ResponsesRequest, items: list[dict[str, Any]]) -> ChatCompletionRequest:
    """The chat completion the request is, its history included (400 when it has none)."""
    try:
        return ChatCompletionRequest.model_validate(to_chat_body(body, items))
    except UntranslatableRequest as exc:
        raise APIError(400, str(exc), param=exc.param, code="unsupported_parameter") from exc
    except ValidationError as exc:
        raise invalid(list(exc.errors(include_url=False))) from exc


def _model_name(pipeline: Pipeline, body: ResponsesRequest) -> str:
    """The public name of the model that answered (the default one's when none was named)."""
    if body.model:
        return body.model
    try:
        return pipeline.router.public_names(None)[0]
    except Exception:  # noqa: BLE001 - it answered, so it resolves; a name is not worth a 500
        return ""


def _in_responses_terms(error: APIError) -> APIError:
    """An error naming a chat-completion parameter, naming the Responses field instead."""
    name = RESPONSES_NAMES.get(error.param or "")
    if name is not None:
        error.message = error.message.replace(f"'{error.param}'", f"'{name}'")
        error.param = name
    return error


class _Storing:
    """Stores a finished response with the items it answered; a failure is logged and the
    response reported as not stored, so that the answer is never lost for it."""

    def __init__(self, repo: ResponseRepository, owner: str, items: list[dict[str, Any]]
                 ) -> None:
        self.repo, self.owner, self.items = repo, owner, items

    async def save(self, answer: ResponseObject) -> bool:
        try:
            await self.repo.insert(self.owner, answer.model_dump(mode="json"), self.items)
        except Exception:  # the answer goes out regardless
            log.exception("could not store response %s", answer.id)
            return False
        return True


def _frame(event: dict[str, Any]) -> bytes:
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


async def _frames(stream: Streaming, translator: ResponseStream, store: _Storing | None
                  ) -> AsyncIterator[bytes]:
    """The stream's chunks as the Responses events; the response is stored before its final
    event; a failure after the start is an ``error`` event and ``response.failed``."""
    try:
        for event in translator.start():
            yield _frame(event)
        async for chunk in stream:
            for event in translator.feed(chunk.chunk):
                yield _frame(event)
        events = translator.end()
        if store is not None and not await store.save(translator.response):
            translator.response.store = False
            events[-1]["response"]["store"] = False
        for event in events:
            yield _frame(event)
    except Exception as exc:  # noqa: BLE001 - reported to the client in-band
        error = _in_responses_terms(to_api_error(exc))
        for event in translator.fail(error.code or error.type, error.message, error.param):
            yield _frame(event)
    finally:
        await stream.close()
