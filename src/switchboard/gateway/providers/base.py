"""What every provider (the local engine, an OpenAI-compatible server, Anthropic) implements, and
the one error type the router reasons about.

A provider takes a ``Call`` and returns OpenAI chat-completion dicts: one whole completion, or an
``UpstreamStream`` of chunk dicts (SSE bytes pass through untouched where the provider already
speaks OpenAI's wire format). ``UpstreamFailure.retryable`` tells the router whether another
attempt (same or another deployment) may succeed; it is only ever raised before the first chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from switchboard.protocol.chat import ChatCompletionRequest

FailureKind = Literal[
    "connect", "timeout", "stall", "reset", "rate_limited", "server_error", "client_error",
    "overloaded", "bad_response",
]
RETRYABLE: frozenset[str] = frozenset(
    {"connect", "timeout", "stall", "reset", "rate_limited", "server_error", "overloaded"}
)


def no_embeddings(kind: str) -> UpstreamFailure:
    return UpstreamFailure("client_error", f"a {kind} deployment does not serve embeddings", 400,
                           {"error": {"message": f"a {kind} deployment does not serve embeddings",
                                      "type": "invalid_request_error", "param": "model",
                                      "code": "model_not_embedding"}})


def key_ref_refused(name: str) -> UpstreamFailure:
    """A request's ``api_key_ref`` names no stored key this model's deployments may use (an
    unknown name reads the same, so names are not revealed); nothing has been sent upstream."""
    message = (f"no stored key named {name!r} may be used with this model "
               "(a secret is usable only by the deployments it is bound to)")
    return UpstreamFailure("client_error", message, 400,
                           {"error": {"message": message, "type": "invalid_request_error",
                                      "param": "api_key_ref",
                                      "code": "api_key_ref_not_allowed"}})


class UpstreamFailure(Exception):
    """A deployment could not answer. ``status``/``body`` hold the upstream's own error, if any."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        status: int | None = None,
        body: dict[str, Any] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.body = body
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


@dataclass
class Call:
    """One attempt's input: the canonical request (unknown fields included)."""

    request: ChatCompletionRequest
    api_key: str | None = None  # from `api_key_ref`, overrides the deployment's key
    tenant: str | None = None  # who asks (an API key's id), for engines that take turns

    @property
    def body(self) -> dict[str, Any]:
        """The request as JSON, as the client sent it (a fresh dict each time)."""
        return self.request.wire()


@dataclass
class StreamEvent:
    """One streamed chunk: its parsed form, and the exact bytes to forward (None = re-serialize)."""

    chunk: dict[str, Any]
    raw: bytes | None = None


@dataclass
class ProviderResult:
    """A whole completion plus what only the provider knows (local time to first token)."""

    completion: dict[str, Any]
    time_to_first_token_s: float | None = None


class UpstreamStream(Protocol):
    def __aiter__(self) -> AsyncIterator[StreamEvent]: ...

    async def aclose(self) -> None: ...


class Provider(Protocol):
    """One deployment's way to answer chat completions (and, where it can, embeddings)."""

    async def complete(self, call: Call) -> ProviderResult: ...

    async def embed(self, body: dict[str, Any], api_key: str | None) -> dict[str, Any]:
        """OpenAI's embeddings answer for an embeddings request body."""
        ...

    async def stream(self, call: Call) -> UpstreamStream:
        """Open the stream; raise ``UpstreamFailure`` if it cannot start."""
        ...

    async def close(self) -> None: ...
