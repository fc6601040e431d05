"""The errors several layers raise, defined below all of them so that any layer may raise or
catch them: ``APIError`` (what a client is told: status, OpenAI's error fields, headers) and the
lookup and capability failures every route and provider meets (``ModelNotFound``,
``ModelsLoading``, ``Unsupported``). Nothing here imports from Switchboard; how each is rendered
is the HTTP layer's business (``switchboard.http.errors``)."""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """An error reported to the client as is: an HTTP status and OpenAI's error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """OpenAI's ``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class ModelNotFound(LookupError):
    """No model (or dedicated deployment) by that name, or none this caller may see."""

    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' does not exist or you do not have access to it.")
        self.model = model


class ModelsLoading(RuntimeError):
    """The model exists but is not ready to serve yet."""


class Unsupported(ValueError):
    """A parameter this server knows but cannot honour for this model (→ 400 naming it)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
