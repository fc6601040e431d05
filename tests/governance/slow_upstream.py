"""An OpenAI-compatible upstream on loopback that takes ``delay_s`` to answer (aiohttp, in a
thread), reporting ``PROMPT_TOKENS`` and ``COMPLETION_TOKENS`` for every non-streamed answer: for
requests that must be in flight together, or cut off by their client."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from aiohttp import web

PROMPT_TOKENS = 10
COMPLETION_TOKENS = 10


@dataclass
class SlowUpstream:
    port: int
    delay_s: float = 1.0
    answered: int = 0
    started: int = 0

    def url(self, prefix: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{prefix}"


SLOW = web.AppKey("slow", SlowUpstream)


async def _answer(request: web.Request) -> web.Response:
    slow = request.app[SLOW]
    body = await request.json()
    slow.started += 1
    await asyncio.sleep(slow.delay_s)
    slow.answered += 1
    return web.json_response({
        "id": "chatcmpl-slow", "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "slow answer"},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                  "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS},
    })


@contextmanager
def slow_upstream(delay_s: float = 1.0) -> Iterator[SlowUpstream]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    slow = SlowUpstream(port, delay_s)
    app = web.Application()
    app[SLOW] = slow
    app.router.add_post("/{tail:.*}chat/completions", _answer)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield slow
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
