"""The HTTP layer: routes, auth, errors and SSE. It translates between the wire protocol and the
serving layer; it never samples or schedules."""

from switchboard.http.app import create_app

__all__ = ["create_app"]
