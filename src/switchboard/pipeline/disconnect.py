"""Work that stops when its client leaves: ``until_gone`` cancels it (freeing its engine
sequences or its upstream connection) as soon as the caller's disconnect signal fires."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def until_gone(work: Awaitable[T],
                     disconnected: Callable[[], Awaitable[None]] | None) -> T | None:
    """Await ``work``; if ``disconnected()`` returns first, cancel it and return ``None``."""
    if disconnected is None:
        return await work
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(disconnected())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    await asyncio.wait({task})  # its cleanup (in-flight count, upstream connection) is done
    return None
