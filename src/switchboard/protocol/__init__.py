"""The wire protocol: pydantic models of every request and response body the API speaks."""

from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.protocol.responses import (
    ChatCompletion,
    ChatCompletionChunk,
    ErrorResponse,
    ModelCard,
    ModelList,
    Usage,
)

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ErrorResponse",
    "ModelCard",
    "ModelList",
    "Usage",
]
