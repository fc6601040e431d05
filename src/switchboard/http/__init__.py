"""The HTTP layer: routes, auth, errors and SSE. It translates between the wire protocol and the
serving layer; it never samples or schedules.

Importing the package builds nothing: the application is ``switchboard.http.app.create_app``."""
