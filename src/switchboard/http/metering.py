"""Between the routes and the ``Governor``: admit a chat request (the key's model list, limits
and budget) and report how it ended, whether it was answered whole, streamed, failed or cut off."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from switchboard.gateway.router import Answer, ProviderRouter, RoutedStream
from switchboard.governance.governor import Admission, Governor, Outcome
from switchboard.http.auth import principal
from switchboard.http.errors import APIError, to_api_error
from switchboard.http.request_id import current_request_id
from switchboard.protocol.chat import ChatCompletionRequest

SESSION_HEADER = "x-session-id"


async def admit(
    request: Request,
    body: ChatCompletionRequest,
    raw: dict[str, Any],
    deployment: str | None = None,
    endpoint: str = "chat.completions",
) -> Admission:
    """Raises ``APIError`` (404 unknown model, 403 model not allowed, 429 over a limit)."""
    gateway: ProviderRouter = request.app.state.router
    governor: Governor = request.app.state.governor
    try:
        names = gateway.public_names(body.model, deployment)
        return await governor.admit(
            principal(request), names[0], names,
            endpoint=endpoint, request_id=current_request_id.get(),
            session_id=body.session_id or request.headers.get(SESSION_HEADER),
            stream=bool(body.stream), body=raw,
        )
    except Exception as exc:
        raise to_api_error(exc) from exc


def answered(answer: Answer) -> Outcome:
    completion = answer.completion
    usage = completion.get("usage") or {}
    return Outcome(
        200, answer.deployment.id, answer.deployment.kind, completion.get("metrics"),
        cached_tokens=_cached(usage),
        output=[c.get("message") for c in completion.get("choices") or ()],
    )


def streamed(stream: RoutedStream) -> Outcome:
    """A finished (or cut) stream; an in-band failure is recorded with its status."""
    status, error = 200, None
    if stream.failure is not None:
        failure = to_api_error(stream.failure)
        status, error = failure.status, failure.message
    elif not stream.completed:
        status, error = 499, "the client disconnected"
    return Outcome(status, stream.deployment.id, stream.deployment.kind, stream.metrics,
                   cached_tokens=_cached(stream.usage or {}), error=error,
                   output=stream.output_text)


def failed(error: APIError) -> Outcome:
    return Outcome(error.status, error=error.message)


def _cached(usage: dict[str, Any]) -> int:
    return int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
