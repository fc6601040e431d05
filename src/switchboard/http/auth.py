"""API-key authentication: ``Authorization: Bearer KEY`` or Telkom's ``x-api-key: KEY``.

Keys are compared in constant time against every configured key; no key is ever logged.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from switchboard.http.errors import APIError


class KeyChecker:
    def __init__(self, keys: list[str]) -> None:
        self._keys = [k.encode() for k in keys]

    @property
    def open(self) -> bool:
        return not self._keys

    async def __call__(self, request: Request) -> None:
        """FastAPI dependency: raise 401 unless the request carries a valid key (async, so
        FastAPI does not hop to a worker thread for it)."""
        if self.open:
            return
        presented = _presented_keys(request)
        if not presented:
            raise APIError(
                401,
                "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' "
                "or 'x-api-key: KEY'.",
                type="authentication_error",
                code="missing_api_key",
            )
        matched = False
        for candidate in presented:  # no early exit: time does not depend on which key matched
            for key in self._keys:
                matched |= hmac.compare_digest(candidate.encode(), key)
        if not matched:
            raise APIError(
                401,
                "Incorrect API key provided.",
                type="authentication_error",
                code="invalid_api_key",
            )


def _presented_keys(request: Request) -> list[str]:
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
