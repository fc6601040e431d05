"""Errors in OpenAI's format: ``{"error": {"message", "type", "param", "code"}}``.

Maps every failure the layers below can raise to a status code, and request validation failures
to a 422 that carries both FastAPI's ``detail`` list and the ``error`` object.
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

from switchboard.engine import (
    EngineError,
    EngineOverloaded,
    PromptTooLong,
    TemplateRenderError,
)
from switchboard.gateway.providers.base import UpstreamFailure
from switchboard.governance.governor import GovernanceError
from switchboard.persistence import DATABASE_ERRORS, database_unreachable
from switchboard.protocol.limits import LIMIT_CODES
from switchboard.retrieval.buckets import BucketNotFound
from switchboard.serving import (
    GenerationFailed,
    ModelNotFound,
    ModelsLoading,
    Unsupported,
)
from switchboard.serving.tool_parser import MalformedToolCall

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


class APIError(Exception):
    """An error the API reports to the client as is."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        return ErrorResponse(self.body(), status_code=self.status, headers=self.headers)


def to_api_error(exc: Exception) -> APIError:
    """Translate an exception from the serving or engine layer into an ``APIError``."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, BucketNotFound):
        return APIError(404, f"bucket {exc.args[0]!r} not found", type="not_found_error",
                        param="bucket", code="bucket_not_found")
    if isinstance(exc, GovernanceError):
        return APIError(exc.status, exc.message, type=exc.type, param=exc.param, code=exc.code,
                        headers=dict(exc.headers))
    if isinstance(exc, ModelNotFound):
        return APIError(404, str(exc), param="model", code="model_not_found")
    if isinstance(exc, Unsupported):
        return APIError(400, str(exc), param=exc.param, code="unsupported_parameter")
    if isinstance(exc, TemplateRenderError):
        return APIError(400, str(exc), param="messages", code="invalid_messages")
    if isinstance(exc, PromptTooLong):
        return APIError(400, str(exc), param="messages", code="context_length_exceeded")
    if isinstance(exc, EngineOverloaded):
        return APIError(
            429,
            str(exc),
            type="server_overloaded",
            code="server_overloaded",
            headers={"Retry-After": str(exc.retry_after_s)},
        )
    if isinstance(exc, ModelsLoading):
        return APIError(
            503, f"Model not ready: {exc}", type="server_error", code="model_loading",
            headers={"Retry-After": "1"},
        )
    if isinstance(exc, EngineError):
        return APIError(400, str(exc))
    if isinstance(exc, UpstreamFailure):
        return _upstream_error(exc)
    if isinstance(exc, MalformedToolCall):  # the model's output left the enforced call format
        return APIError(502, f"the model's tool call could not be read: {exc}",
                        type="server_error", code="invalid_tool_call")
    if isinstance(exc, GenerationFailed):
        return APIError(500, str(exc), type="server_error", code="generation_failed")
    if database_unreachable(exc):
        log.error("database unavailable: %s", exc)
        return APIError(503, "the database is unavailable; try again shortly",
                        type="server_error", code="database_unavailable",
                        headers={"Retry-After": "1"})
    log.exception("unexpected error", exc_info=exc)
    return APIError(500, "internal server error", type="server_error")


_GATEWAY_STATUS = {"timeout": 504, "stall": 504}


def _upstream_error(exc: UpstreamFailure) -> APIError:
    """An upstream's own 4xx passes through; transport failures are 502/504; 429 and overload
    keep their status with ``Retry-After``. Upstream credential errors are ours (502)."""
    headers = {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    upstream = (exc.body or {}).get("error") if isinstance(exc.body, dict) else None
    upstream = upstream if isinstance(upstream, dict) else {}
    if exc.kind == "client_error" and exc.status not in (None, 401, 403):
        return APIError(
            exc.status or 400,
            str(upstream.get("message") or exc.message),
            type=str(upstream.get("type") or "invalid_request_error"),
            param=upstream.get("param"),
            code=upstream.get("code"),
        )
    if exc.kind in ("rate_limited", "overloaded"):
        return APIError(exc.status or 503, exc.message, type="server_overloaded",
                        code="rate_limited" if exc.kind == "rate_limited" else "server_overloaded",
                        headers=headers or {"Retry-After": "1"})
    if exc.kind == "client_error":
        return APIError(502, f"the upstream provider refused our credentials: {exc.message}",
                        type="upstream_error", code="upstream_auth_failed")
    status = _GATEWAY_STATUS.get(exc.kind, 502)
    return APIError(status, f"upstream {exc.kind.replace('_', ' ')}: {exc.message}",
                    type="upstream_error", code=f"upstream_{exc.kind}", headers=headers)


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
        return APIError(400, f"{param}: {limit['msg']}" if param else limit["msg"], param=param,
                        code=limit["type"]).response()
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
    return exc.response()


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    kind = {401: "authentication_error", 404: "not_found_error"}.get(exc.status_code)
    error = APIError(
        exc.status_code,
        str(exc.detail),
        type=kind or ("server_error" if exc.status_code >= 500 else "invalid_request_error"),
        headers=dict(exc.headers or {}),
    )
    return error.response()


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    return to_api_error(exc).response()


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
