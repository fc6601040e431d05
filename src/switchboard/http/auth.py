"""Who is calling: ``authenticate`` (a FastAPI dependency) reads the key from
``Authorization: Bearer KEY`` or Telkom's ``x-api-key: KEY``, asks the ``Governor`` and leaves the
``Principal`` on ``request.state.principal``; ``require_admin`` guards the admin API."""

from __future__ import annotations

from fastapi import Request

from switchboard.governance.governor import Governor
from switchboard.governance.keys import Principal
from switchboard.http.errors import APIError, to_api_error


async def authenticate(request: Request) -> None:
    """Raise 401 unless the request carries a valid key (async: no worker-thread hop)."""
    governor: Governor = request.app.state.governor
    try:
        request.state.principal = await governor.authenticate(presented_keys(request))
    except Exception as exc:
        raise to_api_error(exc) from exc


async def require_admin(request: Request) -> None:
    await authenticate(request)
    if not request.app.state.governance.admin_enabled:
        raise APIError(403, "The admin API is off: start the server with --admin-key.",
                       type="permission_error", code="admin_disabled")
    if not principal(request).admin:
        raise APIError(403, "This endpoint needs the admin key.", type="permission_error",
                       code="admin_only")


def principal(request: Request) -> Principal:
    return getattr(request.state, "principal", None) or Principal()


def presented_keys(request: Request) -> list[str]:
    """Keys from both headers: SDK users often set ``x-api-key`` next to a placeholder Bearer."""
    keys = []
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            keys.append(value.strip())
    key = request.headers.get("x-api-key")
    if key and key.strip():
        keys.append(key.strip())
    return keys
