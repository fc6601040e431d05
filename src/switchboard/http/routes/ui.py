"""The web UI's files at ``/ui/`` (``/`` redirects there). They are public like any web page:
every action the page takes goes through the API with the user's key.

Each file is served with a Content-Security-Policy that allows only the UI's own scripts, styles
and API calls (no inline script or style, no other origin, no framing), ``X-Frame-Options: DENY``
and ``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from switchboard.http.body_limits import CheckedRoute
from switchboard.webui import STATIC_DIR

router = APIRouter(include_in_schema=False, route_class=CheckedRoute)

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class SecuredStaticFiles(StaticFiles):
    """Static files with the UI's security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("ui/")


def mount(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui", SecuredStaticFiles(directory=STATIC_DIR, html=True), name="ui")
