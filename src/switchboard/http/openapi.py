"""What the OpenAPI schema declares beyond the success response: ``error_responses(400, 404)``
gives the ``responses=`` entries of error statuses, each with OpenAI's error body (422 with
FastAPI's ``detail`` list as well), so that every status a route can answer is in the schema."""

from __future__ import annotations

from typing import Any

from switchboard.protocol.responses import ErrorResponse, ValidationErrorResponse

Responses = dict[int | str, dict[str, Any]]

_DESCRIPTIONS = {
    400: "The request is invalid",
    401: "No valid API key",
    403: "The key may not do this",
    404: "Not found",
    409: "Conflicts with what exists",
    413: "The request body is too large",
    422: "The body or a parameter fails validation",
    429: "A rate limit or budget is exhausted, or the server is busy (see `Retry-After`)",
    500: "The server failed",
    502: "The upstream provider failed",
    503: "Not ready, or the database is unavailable (see `Retry-After`)",
    504: "The upstream provider timed out",
}

# What any route behind an API key can answer: no/invalid key, or the key store unreachable.
AUTHENTICATED = (401, 503)


def error_responses(*statuses: int) -> Responses:
    """``responses=`` entries for these error statuses."""
    return {
        status: {
            "model": ValidationErrorResponse if status == 422 else ErrorResponse,
            "description": _DESCRIPTIONS.get(status, "Error"),
        }
        for status in statuses
    }


def content_response(media_type: str, description: str,
                     schema: dict[str, Any] | None = None) -> Responses:
    """A 200 whose body is ``media_type`` (besides the route's JSON, if it has one)."""
    return {200: {"description": description,
                  "content": {media_type: {"schema": schema or {"type": "string"}}}}}
