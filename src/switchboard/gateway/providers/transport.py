"""The HTTP side shared by upstream providers: pooled aiohttp sessions, server-sent events read
off a response, and transport errors and error statuses turned into ``UpstreamFailure``s (a read
that waits past the stall timeout is a ``stall``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from switchboard.gateway.providers.base import UpstreamFailure


async def sse_payloads(resp: aiohttp.ClientResponse, stall_timeout_s: float) -> AsyncIterator[bytes]:
    """The ``data`` of each event (multi-line data joined), up to ``[DONE]`` or end of body."""
    data: list[bytes] = []
    try:
        async for line in resp.content:
            line = line.rstrip(b"\r\n")
            if line.startswith(b"data:"):
                data.append(line[5:].lstrip())
                continue
            if line or not data:
                continue  # comments, event names, keep-alives
            payload = b"\n".join(data)
            data = []
            if payload == b"[DONE]":
                return
            yield payload
        if data and data[0] != b"[DONE]":
            yield b"\n".join(data)
    except TimeoutError as exc:
        raise UpstreamFailure("stall", f"the stream stalled for {stall_timeout_s:g} s") from exc
    except aiohttp.ClientError as exc:
        raise transport_failure(exc) from exc
    finally:
        resp.release()


def transport_failure(exc: Exception) -> UpstreamFailure:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamFailure("connect", f"cannot connect to the upstream: {exc.os_error}")
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError,
                        aiohttp.ClientOSError)):
        return UpstreamFailure("reset", f"the upstream dropped the connection: {exc}")
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return UpstreamFailure("stall", "the upstream stalled")
    return UpstreamFailure("bad_response", f"upstream error: {exc}")


def retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def new_session(max_connections: int) -> aiohttp.ClientSession:
    """A pooled keep-alive session (one per deployment, reused by every request)."""
    connector = aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=30, ttl_dns_cache=300)
    return aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",))


def status_failure(status: int, raw: bytes, headers: Any) -> UpstreamFailure:
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        text = raw[:300].decode("utf-8", "replace") if raw else ""
        body = {"error": {"message": text or f"upstream answered {status}",
                          "type": "upstream_error", "param": None, "code": None}}
    message = str(body["error"].get("message") or f"upstream answered {status}")
    if status == 429:
        return UpstreamFailure("rate_limited", message, status, body, retry_after(headers))
    if status >= 500:
        return UpstreamFailure("server_error", message, status, body, retry_after(headers))
    return UpstreamFailure("client_error", message, status, body)
