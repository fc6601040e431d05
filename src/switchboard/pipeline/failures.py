"""What a failure means to the client: ``to_api_error`` maps every exception the layers below
the pipeline raise (governance, retrieval, the gateway's providers, serving, the engine, the
database) to one ``APIError``, its status, OpenAI's error fields and headers. Each dialect renders
that in its own format; the ledger records its status and message."""

from __future__ import annotations

import logging

from switchboard.engine import (
    EngineError,
    EngineOverloaded,
    PromptTooLong,
    TemplateRenderError,
)
from switchboard.errors import APIError, ModelNotFound, ModelsLoading, Unsupported
from switchboard.gateway.providers.base import UpstreamFailure
from switchboard.governance.governor import GovernanceError
from switchboard.persistence import database_unreachable
from switchboard.retrieval.buckets import BucketNotFound
from switchboard.serving import GenerationFailed
from switchboard.serving.tool_parser import MalformedToolCall

log = logging.getLogger(__name__)


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
