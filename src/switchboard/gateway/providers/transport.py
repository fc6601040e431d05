"""The HTTP side shared by upstream providers: pooled aiohttp sessions, server-sent events read
off a response, and transport errors and error statuses turned into ``UpstreamFailure``s.

A stream ``stall``s when the upstream sends no *event* for the stall timeout: comments
(``: keep-alive``) and other lines without data do not count, nor do events the provider drops
(Anthropic's ``ping``), so an upstream that only keeps the connection alive cannot hold a client
forever. Only time spent waiting on the upstream counts, not the time the client takes to read.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson
from aiohttp.http_exceptions import LineTooLong

from switchboard.gateway.config import DeploymentConfig
from switchboard.gateway.providers.base import UpstreamFailure


class StallWatch:
    """How long a stream has waited on its upstream since the last event that counts."""

    def __init__(self, stall_timeout_s: float) -> None:
        self.stall_timeout_s = stall_timeout_s
        self.silent_s = 0.0

    def progressed(self) -> None:
        """An event the client will see arrived: the silence starts over."""
        self.silent_s = 0.0

    async def read_line(self, resp: aiohttp.ClientResponse) -> bytes:
        """The next line of the body (``b""`` at its end), or a ``stall`` failure once the
        silence reaches the stall timeout."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(max(0.0, self.stall_timeout_s - self.silent_s)):
                return await resp.content.readline()
        except TimeoutError as exc:
            raise UpstreamFailure(
                "stall", f"the upstream sent no event for {self.stall_timeout_s:g} s"
            ) from exc
        finally:
            self.silent_s += loop.time() - started


async def sse_payloads(resp: aiohttp.ClientResponse, watch: StallWatch) -> AsyncIterator[bytes]:
    """The ``data`` of each event (multi-line data joined), up to ``[DONE]`` or end of body.

    The caller tells ``watch`` which events count as progress; lines without data never do."""
    data: list[bytes] = []
    try:
        while line := await watch.read_line(resp):
            line = line.rstrip(b"\r\n")
            if line.startswith(b"data:"):
                data.append(line[5:].lstrip())
                continue
            if line or not data:
                continue  # comments, event names, keep-alives
            payload = b"\n".join(data)
            data = []
            if payload == b"[DONE]":
                resp.release()  # the connection goes back to the pool if the body has ended
                return
            yield payload
        if data and data[0] != b"[DONE]":
            yield b"\n".join(data)
        resp.release()
    except aiohttp.ClientError as exc:
        raise transport_failure(exc) from exc
    except (LineTooLong, ValueError) as exc:  # a line past aiohttp's buffer limit
        raise UpstreamFailure("bad_response", f"the upstream sent an unreadable stream: {exc}") \
            from exc
    finally:
        resp.close()  # cut short (a stall, the client left): the upstream stops generating


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
    """Seconds from ``Retry-After``: a number of seconds or an HTTP date (``None`` if absent or
    unreadable, never negative or infinite)."""
    value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


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
