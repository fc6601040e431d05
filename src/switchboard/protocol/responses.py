"""Response bodies: chat completions, stream chunks, usage, models and errors, in OpenAI's
shapes."""

from __future__ import annotations

import secrets
import time
from typing import Any, Literal

from pydantic import BaseModel, Field, field_serializer

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


def completion_id() -> str:
    return "chatcmpl-" + secrets.token_urlsafe(18).replace("-", "a").replace("_", "b")


def now() -> int:
    return int(time.time())


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class PromptTokenLogprob(BaseModel):
    """One prompt token scored in its context (``prompt_logprobs``); the first token has no
    context, and its ``logprob`` is null."""

    token: str
    logprob: float | None
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]


def _absent(value: object) -> bool:
    return value is None


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None
    refusal: list[TokenLogprob] | None = None


class AssistantReply(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class Choice(BaseModel):
    index: int
    message: AssistantReply
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason
    # Switchboard extension, for a raw prompt (the completions API) that asked for it; omitted
    # otherwise. A raw prompt's choices are numbered prompt_index * n + i.
    prompt_logprobs: list[PromptTokenLogprob] | None = Field(default=None, exclude_if=_absent)

    @field_serializer("message")
    def _message(self, message: AssistantReply) -> dict[str, Any]:
        data = message.model_dump()
        if data["tool_calls"] is None:
            del data["tool_calls"]  # OpenAI omits it when there are no calls
        return data


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0
    audio_tokens: int = 0


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int = 0
    audio_tokens: int = 0
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = Field(default_factory=PromptTokensDetails)
    completion_tokens_details: CompletionTokensDetails = Field(
        default_factory=CompletionTokensDetails
    )

    @classmethod
    def of(cls, prompt: int, completion: int, cached: int = 0) -> Usage:
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
        )


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    service_tier: str | None = "default"
    system_fingerprint: str


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason | None = None
    # with a raw prompt's first content of each choice, as on ``Choice``
    prompt_logprobs: list[PromptTokenLogprob] | None = Field(default=None, exclude_if=_absent)

    @field_serializer("delta")
    def _delta(self, delta: Delta) -> dict[str, Any]:
        return delta.model_dump(exclude_none=True)  # OpenAI sends only what changed


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    service_tier: str | None = "default"
    system_fingerprint: str


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "switchboard"
    context_length: int | None = Field(default=None, description="Extension: context window.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ValidationErrorResponse(ErrorResponse):
    """422: FastAPI's ``detail`` list (as Telnyx documents it) next to OpenAI's ``error`` object."""

    detail: list[dict[str, Any]]
