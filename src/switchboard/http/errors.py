"""Errors in OpenAI's format: ``{"error": {"message", "type", "param", "code"}}``.

Renders ``APIError`` (``switchboard.errors``; the pipeline's ``to_api_error`` maps every failure
of the layers below to one) and answers request validation failures with a 422 that carries both
FastAPI's ``detail`` list and the ``error`` object.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from switchboard.engine import EngineError, TemplateRenderError
from switchboard.errors import APIError, ModelNotFound, ModelsLoading, Unsupported
from switchboard.gateway.providers.base import UpstreamFailure
from switchboard.governance.governor import GovernanceError
from switchboard.persistence import DATABASE_ERRORS
from switchboard.pipeline.failures import to_api_error
from switchboard.protocol.limits import LIMIT_CODES

__all__ = ["APIError", "ErrorResponse", "error_response", "install_error_handlers",
           "to_api_error"]

log = logging.getLogger(__name__)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities (which Python's JSON reads from ``NaN`` or ``1e400``
    but strict JSON cannot carry) spelled as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class ErrorResponse(JSONResponse):
    """An error body, whatever client input it echoes (validation errors echo the input):
    NaN and infinities as strings, anything UTF-8 cannot encode as ``?``."""

    def render(self, content: Any) -> bytes:
        try:
            text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except ValueError:
            text = json.dumps(_finite(content), ensure_ascii=False, separators=(",", ":"))
        return text.encode("utf-8", "replace")


def error_response(error: APIError) -> JSONResponse:
    """An ``APIError`` as OpenAI's error body, with its status and headers."""
    return ErrorResponse(error.body(), status_code=error.status, headers=error.headers)


def _first_param(errors: list[dict[str, Any]]) -> str | None:
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        if loc:
            head = loc[0]
            rest = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[1:])
            return head + rest
    return None


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    found = exc.errors()
    limit = next((e for e in found if e.get("type") in LIMIT_CODES), None)
    if limit is not None:  # over one of the protocol's bounds: a 400 naming it (not the input)
        param = _first_param([limit])
        message = f"{param}: {limit['msg']}" if param else limit["msg"]
        return error_response(APIError(400, message, param=param, code=limit["type"]))
    errors = jsonable_encoder(found, custom_encoder={Exception: str})
    first = errors[0] if errors else {}
    param = _first_param(errors)
    message = first.get("msg", "invalid request")
    if param:
        message = f"{param}: {message}"
    body = {
        "detail": errors,
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": "invalid_value" if errors else None,
        },
    }
    return ErrorResponse(body, status_code=422)


async def _api_error(request: Request, exc: APIError) -> JSONResponse:
    return error_response(exc)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    kind = {401: "authentication_error", 404: "not_found_error"}.get(exc.status_code)
    error = APIError(
        exc.status_code,
        str(exc.detail),
        type=kind or ("server_error" if exc.status_code >= 500 else "invalid_request_error"),
        headers=dict(exc.headers or {}),
    )
    return error_response(error)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    return error_response(to_api_error(exc))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(APIError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    # Registered by class, so the connection stays open (Starlette re-raises what only the
    # catch-all ``Exception`` handler answers, and the server then drops the connection).
    for known in (ModelNotFound, ModelsLoading, Unsupported, EngineError, TemplateRenderError,
                  UpstreamFailure, GovernanceError, *DATABASE_ERRORS):
        app.add_exception_handler(known, _unexpected)
    app.add_exception_handler(Exception, _unexpected)
