"""The web UI's files at ``/ui/`` (``/`` redirects there). They are public like any web page:
every action the page takes goes through the API with the user's key."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from switchboard.http.body_limits import CheckedRoute
from switchboard.webui import STATIC_DIR

router = APIRouter(include_in_schema=False, route_class=CheckedRoute)


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("ui/")


def mount(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui", StaticFiles(directory=STATIC_DIR, html=True), name="ui")
