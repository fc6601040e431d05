"""Server-sent events framing for streamed completions (``data: {json}\\n\\n`` … ``data: [DONE]``).

Events an upstream sent in OpenAI's format go out as the upstream's own bytes; others are
serialized once with orjson.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from switchboard.gateway.providers.base import StreamEvent

DONE = b"data: [DONE]\n\n"


def event(payload: StreamEvent | dict[str, Any]) -> bytes:
    if isinstance(payload, StreamEvent):
        if payload.raw is not None:
            return payload.raw
        payload = payload.chunk
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def sse_stream(
    items: AsyncIterator[StreamEvent],
    on_error: Callable[[Exception], dict[str, Any]],
    on_close: Callable[[], Any],
) -> AsyncIterator[bytes]:
    """Frame ``items``; an error after the stream started is sent as ``data: {"error": …}``.

    ``on_close`` runs however the stream ends, including a client disconnect.
    """
    try:
        async for item in items:
            yield event(item)
    except Exception as exc:  # noqa: BLE001 - reported to the client in-band
        yield event(on_error(exc))
    finally:
        await on_close()
    yield DONE
