"""Server-sent events framing for streamed completions (``data: {json}\\n\\n`` … ``data: [DONE]``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import BaseModel

DONE = b"data: [DONE]\n\n"


def event(payload: BaseModel | dict[str, Any]) -> bytes:
    if isinstance(payload, BaseModel):
        data = payload.model_dump_json(exclude_unset=False)
    else:
        data = json.dumps(payload, separators=(",", ":"))
    return b"data: " + data.encode() + b"\n\n"


async def sse_stream(
    items: AsyncIterator[BaseModel],
    on_error: Callable[[Exception], dict[str, Any]],
    on_close: Callable[[], None],
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
        on_close()
    yield DONE
