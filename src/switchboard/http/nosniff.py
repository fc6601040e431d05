"""``X-Content-Type-Options: nosniff`` on every response, so that a browser never reads an API
answer (JSON that echoes client input, CSV, Prometheus text) as another type, such as HTML."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-content-type-options"


class NoSniffMiddleware:
    """Pure ASGI: adds the header to each response start, unless the response set it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_nosniff(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if all(name.lower() != HEADER for name, _ in headers):
                    message["headers"] = [*headers, (HEADER, b"nosniff")]
            await send(message)

        await self.app(scope, receive, send_nosniff)
