"""Lone surrogates out of JSON request bodies, before anything parses them.

JSON may spell a UTF-16 surrogate as a ``\\ud800`` escape with no partner; Python's ``json``
then gives a string that UTF-8 cannot encode, and a tokenizer, ``orjson`` or a database driver
fails on it deep inside a request (a 500). A body that holds such an escape is parsed, each lone
surrogate becomes ``?``, and the body is passed on re-encoded; any other body passes untouched
(one regular-expression scan of its bytes).
"""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def without_lone_surrogates(body: bytes) -> bytes:
    """``body`` with every lone surrogate replaced by ``?`` (pairs were joined by the parse);
    a body that is not JSON comes back as it is, for the framework to refuse."""
    if not _SURROGATE_ESCAPE.search(body):
        return body
    try:
        parsed = json.loads(body)
    except ValueError:
        return body
    return json.dumps(parsed, ensure_ascii=False).encode("utf-8", "replace")


class LoneSurrogateFilter:
    """Pure ASGI: buffers only JSON bodies (which the framework buffers anyway)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def receive_clean() -> Message:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return message
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body = without_lone_surrogates(b"".join(chunks))
                    return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, receive_clean, send)


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return b"json" in value
    return False
