"""A scriptable test upstream on loopback: OpenAI's chat completions at ``*/chat/completions`` and
Anthropic's Messages API at ``*/v1/messages``, OpenAI's embeddings at ``*/embeddings``, in a
background thread (aiohttp.web).

Each request takes the next behaviour from the script (``FakeUpstream.script``), default ``ok``:

- ``ok``: answer (``"answer from <path prefix>"``), with usage; streams in several chunks.
- ``no_usage``: answer without any usage.
- ``500``, ``429`` (``Retry-After: 0``), ``400``: that status with an OpenAI error body.
- ``429_wait``: 429 with ``Retry-After: 1``.
- ``timeout``: wait 30 s before answering (the caller's timeout fires first).
- ``reset``: close the connection without an answer.
- ``stall``: stream two chunks, then go silent for 30 s.
- ``keepalive``: open a stream and send only ``: keep-alive`` comments (every 0.1 s, for 30 s);
  ``keepalive_after_first``: the same after one chunk. ``FakeUpstream.abandoned`` counts those
  the caller closed before the 30 s were over.

Every request is recorded (path, headers, JSON body) in ``FakeUpstream.requests``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

WORDS = ["answer", " from", " the", " fake", " upstream"]



@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeUpstream:
    port: int = 0
    script: deque[str] = field(default_factory=deque)
    requests: list[Recorded] = field(default_factory=list)
    abandoned: int = 0

    def url(self, prefix: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{prefix}"

    def next(self) -> str:
        return self.script.popleft() if self.script else "ok"

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]


FAKE = web.AppKey("fake", FakeUpstream)


def _prefix(path: str, suffix: str) -> str:
    return path[: -len(suffix)] if path.endswith(suffix) else path


async def _openai(request: web.Request) -> web.StreamResponse:
    body, behaviour, failure = await _receive(request)
    if failure is not None:
        return failure
    who = _prefix(request.path, "/v1/chat/completions").strip("/") or "root"
    words = [f"{who}:", *WORDS]
    usage = {"prompt_tokens": 11, "completion_tokens": len(words), "total_tokens": 11 + len(words)}
    head = {"id": "chatcmpl-fake", "created": int(time.time()), "model": body.get("model")}
    if not body.get("stream"):
        answer = {**head, "object": "chat.completion", "choices": [{
            "index": 0, "message": {"role": "assistant", "content": "".join(words)},
            "logprobs": None, "finish_reason": "stop"}]}
        if behaviour != "no_usage":
            answer["usage"] = usage
        return web.json_response(answer)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)

    async def send(chunk: dict[str, Any]) -> None:
        await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

    chunk = {**head, "object": "chat.completion.chunk"}
    if behaviour == "keepalive":
        return await _keep_alive(request, resp)
    await send({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                      "finish_reason": None}]})
    if behaviour == "keepalive_after_first":
        return await _keep_alive(request, resp)
    for i, word in enumerate(words):
        if behaviour == "stall" and i == 2:
            await asyncio.sleep(30)
        await send({**chunk, "choices": [{"index": 0, "delta": {"content": word},
                                          "finish_reason": None}]})
    await send({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if behaviour != "no_usage" and (body.get("stream_options") or {}).get("include_usage"):
        await send({**chunk, "choices": [], "usage": usage})
    await resp.write(b"data: [DONE]\n\n")
    return resp


async def _keep_alive(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
    """SSE comments only, for 30 s or until the caller closes the connection."""
    try:
        for _ in range(300):
            await resp.write(b": keep-alive\n\n")
            await asyncio.sleep(0.1)
    except (ConnectionError, asyncio.CancelledError):
        request.app[FAKE].abandoned += 1
        raise
    return resp


async def _embeddings(request: web.Request) -> web.StreamResponse:
    """OpenAI's embeddings: input i gets [len(text), i, 1]; usage counts one token per word."""
    body, _, failure = await _receive(request)
    if failure is not None:
        return failure
    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
    data = [{"object": "embedding", "index": i, "embedding": [float(len(t)), float(i), 1.0]}
            for i, t in enumerate(texts)]
    words = sum(len(str(t).split()) for t in texts)
    return web.json_response({"object": "list", "data": data, "model": body.get("model"),
                              "usage": {"prompt_tokens": words, "total_tokens": words}})


async def _receive(
    request: web.Request,
) -> tuple[dict[str, Any], str, web.StreamResponse | None]:
    """Record the request and take its scripted behaviour; a failure answer if it is one."""
    fake: FakeUpstream = request.app[FAKE]
    body = await request.json()
    fake.requests.append(Recorded(request.path, dict(request.headers), body))
    behaviour = fake.next()
    return body, behaviour, await _failure(request, behaviour)


async def _failure(request: web.Request, behaviour: str) -> web.StreamResponse | None:
    if behaviour in ("500", "429", "400", "429_wait"):
        status = int(behaviour[:3])
        headers = {"Retry-After": "1" if behaviour == "429_wait" else "0"} if status == 429 else {}
        error = {"error": {"message": f"simulated {status}", "type": "test_error",
                           "param": "messages" if status == 400 else None, "code": None}}
        return web.json_response(error, status=status, headers=headers)
    if behaviour == "timeout":
        await asyncio.sleep(30)
    if behaviour == "reset":
        assert request.transport is not None
        request.transport.abort()
        return web.Response()  # never sent
    return None


async def _anthropic(request: web.Request) -> web.StreamResponse:
    """Anthropic's Messages API as its documentation shows it (text or one tool_use block)."""
    body, _, failure = await _receive(request)
    if failure is not None:
        return failure
    keyed = "x-api-key" in request.headers or "Authorization" in request.headers
    if not keyed or "anthropic-version" not in request.headers:
        return web.json_response({"type": "error", "error": {
            "type": "authentication_error", "message": "an API key is required"}}, status=401)
    tools = body.get("tools") or []
    use_tool = tools and (body.get("tool_choice") or {}).get("type") != "none"
    usage = {"input_tokens": 21, "output_tokens": 7}
    message = {"id": "msg_fake01", "type": "message", "role": "assistant", "model": body["model"],
               "stop_sequence": None}
    if use_tool:
        block = {"type": "tool_use", "id": "toolu_fake01", "name": tools[0]["name"],
                 "input": {"city": "Paris"}}
        stop = "tool_use"
    else:
        block = {"type": "text", "text": "Bonjour from Claude"}
        stop = "end_turn"
    if not body.get("stream"):
        return web.json_response({**message, "content": [block], "stop_reason": stop,
                                  "usage": usage})
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)

    async def send(kind: str, data: dict[str, Any]) -> None:
        await resp.write(f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode())

    await send("message_start", {"message": {**message, "content": [], "stop_reason": None,
                                             "usage": {"input_tokens": 21, "output_tokens": 1}}})
    await send("ping", {})
    if use_tool:
        await send("content_block_start", {"index": 0, "content_block": {**block, "input": {}}})
        for part in ('{"city"', ': "Par', 'is"}'):
            await send("content_block_delta", {"index": 0, "delta": {
                "type": "input_json_delta", "partial_json": part}})
    else:
        await send("content_block_start", {"index": 0, "content_block": {"type": "text",
                                                                         "text": ""}})
        for part in ("Bonjour", " from", " Claude"):
            await send("content_block_delta", {"index": 0, "delta": {"type": "text_delta",
                                                                     "text": part}})
    await send("content_block_stop", {"index": 0})
    await send("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                 "usage": {"output_tokens": 7}})
    await send("message_stop", {})
    return resp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream(port=_free_port())
    app = web.Application()
    app[FAKE] = fake
    app.router.add_post("/{tail:.*}/messages", _anthropic)
    app.router.add_post("/{tail:.*}chat/completions", _openai)
    app.router.add_post("/{tail:.*}/embeddings", _embeddings)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", fake.port).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
