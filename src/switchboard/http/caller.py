"""The pipeline's ``Caller`` for an HTTP request: its principal (set by ``authenticate``), its
request id, the ``x-session-id`` header, and a wait that returns once the client disconnects."""

from __future__ import annotations

from fastapi import Request

from switchboard.http.auth import principal
from switchboard.http.request_id import current_request_id
from switchboard.pipeline import Caller

SESSION_HEADER = "x-session-id"


def caller_of(request: Request) -> Caller:
    async def disconnected() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    return Caller(principal(request), current_request_id.get(),
                  request.headers.get(SESSION_HEADER), disconnected)
