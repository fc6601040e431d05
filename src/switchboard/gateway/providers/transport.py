"""The HTTP side shared by upstream providers: pooled aiohttp sessions, server-sent events read
off a response, and transport errors and error statuses turned into ``UpstreamFailure``s (a read
that waits past the stall timeout is a ``stall``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from switchboard.gateway.config import DeploymentConfig
from switchboard.gateway.providers.base import UpstreamFailure


async def sse_payloads(
    resp: aiohttp.ClientResponse, stall_timeout_s: float
) -> AsyncIterator[bytes]:
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


class UpstreamClient:
    """One deployment's pooled keep-alive session and timeouts: whole answers and opened streams,
    with every transport error and error status already an ``UpstreamFailure``."""

    def __init__(self, config: DeploymentConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        self._complete_timeout = aiohttp.ClientTimeout(
            total=config.timeout_s, sock_connect=config.connect_timeout_s
        )
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=config.connect_timeout_s, sock_read=config.stall_timeout_s
        )

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.config.max_connections, keepalive_timeout=30, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector, skip_auto_headers=("User-Agent",)
            )
        return self._session

    async def post(self, url: str, data: bytes, headers: dict[str, str]) -> Any:
        """POST and parse the 200 answer's JSON."""
        try:
            async with self._client().post(
                url, data=data, headers=headers, timeout=self._complete_timeout
            ) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    raise status_failure(resp.status, raw, resp.headers)
        except aiohttp.ClientError as exc:
            raise transport_failure(exc) from exc
        except TimeoutError as exc:
            raise UpstreamFailure(
                "timeout", f"no answer within {self.config.timeout_s:g} s"
            ) from exc
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise UpstreamFailure("bad_response", "the upstream answered with invalid JSON") \
                from exc

    async def open_stream(
        self, url: str, data: bytes, headers: dict[str, str]
    ) -> aiohttp.ClientResponse:
        """POST and return the 200 response, its body (the stream) unread."""
        try:
            resp = await self._client().post(
                url, data=data, headers=headers, timeout=self._stream_timeout
            )
        except aiohttp.ClientError as exc:
            raise transport_failure(exc) from exc
        except TimeoutError as exc:
            raise UpstreamFailure("stall", "the upstream did not answer in time") from exc
        if resp.status != 200:
            try:
                raw = await resp.read()
            except (aiohttp.ClientError, TimeoutError):
                raw = b""
            resp.release()
            raise status_failure(resp.status, raw, resp.headers)
        return resp

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


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
