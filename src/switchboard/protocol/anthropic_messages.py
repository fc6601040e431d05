"""Anthropic's Messages API (``POST /v1/messages``) as pydantic models: the request, the message
it answers with, the events of its stream and its error body.

Only what Switchboard serves is modelled strictly; unknown top-level request fields are kept
(``extra="allow"``) so the route can name them in ``x-switchboard-ignored-params``, and unknown
fields inside blocks (``cache_control``, ``citations``) are accepted and ignored. Content blocks
of a type not listed here (documents, thinking, server tools) fail validation with a 400.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from switchboard.protocol.chat import INT32_MAX
from switchboard.protocol.limits import (
    MAX_CONTENT_PARTS,
    MAX_MESSAGES,
    MAX_TOOLS,
    SCHEMA_SIZE,
    at_most,
)

BLOCKS = at_most(MAX_CONTENT_PARTS, "too_many_content_parts", "content blocks")


class _Block(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- Request content blocks -----------------------------------------------------------------


class TextBlockParam(_Block):
    type: Literal["text"]
    text: str


class ImageSource(_Block):
    type: Literal["base64", "url"]
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class ImageBlockParam(_Block):
    type: Literal["image"]
    source: ImageSource


class ToolUseBlockParam(_Block):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlockParam(_Block):
    type: Literal["tool_result"]
    tool_use_id: str
    content: Annotated[
        str | list[Annotated[TextBlockParam | ImageBlockParam, Field(discriminator="type")]]
        | None,
        BLOCKS,
    ] = None
    is_error: bool | None = None


ContentBlockParam = Annotated[
    TextBlockParam | ImageBlockParam | ToolUseBlockParam | ToolResultBlockParam,
    Field(discriminator="type"),
]


class MessageParam(BaseModel):
    role: Literal["user", "assistant"]
    content: Annotated[str | list[ContentBlockParam], BLOCKS]


# --- Tools ----------------------------------------------------------------------------------


class ToolParam(_Block):
    """A client tool (``type`` absent or ``custom``); server tools are not served."""

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    input_schema: Annotated[dict[str, Any], SCHEMA_SIZE]
    type: Literal["custom"] | None = None


class ToolChoiceAuto(_Block):
    type: Literal["auto"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(_Block):
    type: Literal["any"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(_Block):
    type: Literal["tool"]
    name: str
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(_Block):
    type: Literal["none"]


ToolChoiceParam = Annotated[
    ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone, Field(discriminator="type")
]


class Metadata(_Block):
    user_id: str | None = Field(default=None, max_length=256)


class MessagesRequest(BaseModel):
    """The body of ``POST /v1/messages``, in the order of Anthropic's API reference."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    model: str = Field(description="Model id (a Switchboard model name or alias).")
    max_tokens: int = Field(ge=1, le=INT32_MAX, description="The most tokens to generate.")
    messages: Annotated[
        list[MessageParam], at_most(MAX_MESSAGES, "too_many_messages", "messages")
    ] = Field(min_length=1, description="Alternating user and assistant turns.")
    metadata: Metadata | None = None
    stop_sequences: list[str] | None = Field(default=None, max_length=16)
    stream: bool | None = False
    system: Annotated[str | list[TextBlockParam] | None, BLOCKS] = None
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    tool_choice: ToolChoiceParam | None = None
    tools: Annotated[list[ToolParam] | None, at_most(MAX_TOOLS, "too_many_tools", "tools")] = None
    top_k: int | None = Field(default=None, ge=0, le=INT32_MAX)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)

    @property
    def ignored_params(self) -> list[str]:
        """Top-level fields this server does not know; reported, never silently dropped."""
        return sorted(self.model_extra or {})


class CountTokensRequest(BaseModel):
    """The body of ``POST /v1/messages/count_tokens``: a message request without ``max_tokens``."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: Annotated[
        list[MessageParam], at_most(MAX_MESSAGES, "too_many_messages", "messages")
    ] = Field(min_length=1)
    system: Annotated[str | list[TextBlockParam] | None, BLOCKS] = None
    tool_choice: ToolChoiceParam | None = None
    tools: Annotated[list[ToolParam] | None, at_most(MAX_TOOLS, "too_many_tools", "tools")] = None


class CountTokensResponse(BaseModel):
    input_tokens: int


# --- The answer -----------------------------------------------------------------------------

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal"]


class TextBlock(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ToolUseBlock(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


ContentBlock = Annotated[TextBlock | ToolUseBlock, Field(discriminator="type")]


class MessageUsage(BaseModel):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class Message(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[ContentBlock]
    stop_reason: StopReason | None
    stop_sequence: str | None
    usage: MessageUsage
    metrics: dict[str, Any] | None = Field(
        default=None, exclude_if=lambda value: value is None,
        description="Switchboard's per-request metrics (tokens, cost, latency), as on chat.")


# --- Stream events --------------------------------------------------------------------------


class MessageStartEvent(BaseModel):
    type: Literal["message_start"] = "message_start"
    message: Message


class ContentBlockStartEvent(BaseModel):
    type: Literal["content_block_start"] = "content_block_start"
    index: int
    content_block: ContentBlock


class PingEvent(BaseModel):
    type: Literal["ping"] = "ping"


class TextDelta(BaseModel):
    type: Literal["text_delta"] = "text_delta"
    text: str


class InputJSONDelta(BaseModel):
    type: Literal["input_json_delta"] = "input_json_delta"
    partial_json: str


class ContentBlockDeltaEvent(BaseModel):
    type: Literal["content_block_delta"] = "content_block_delta"
    index: int
    delta: Annotated[TextDelta | InputJSONDelta, Field(discriminator="type")]


class ContentBlockStopEvent(BaseModel):
    type: Literal["content_block_stop"] = "content_block_stop"
    index: int


class MessageDelta(BaseModel):
    stop_reason: StopReason | None
    stop_sequence: str | None


class MessageDeltaUsage(BaseModel):
    """Cumulative totals (the SDK overwrites its snapshot's counts with them)."""

    output_tokens: int
    input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class MessageDeltaEvent(BaseModel):
    type: Literal["message_delta"] = "message_delta"
    delta: MessageDelta
    usage: MessageDeltaUsage
    metrics: dict[str, Any] | None = Field(default=None, exclude_if=lambda value: value is None)


class MessageStopEvent(BaseModel):
    type: Literal["message_stop"] = "message_stop"


StreamEvent = (
    MessageStartEvent | ContentBlockStartEvent | PingEvent | ContentBlockDeltaEvent
    | ContentBlockStopEvent | MessageDeltaEvent | MessageStopEvent
)


# --- Errors ---------------------------------------------------------------------------------

ErrorType = Literal[
    "invalid_request_error", "authentication_error", "billing_error", "permission_error",
    "not_found_error", "request_too_large", "rate_limit_error", "api_error", "overloaded_error",
]


class AnthropicErrorDetail(BaseModel):
    type: ErrorType
    message: str


class AnthropicErrorResponse(BaseModel):
    """Anthropic's error body (also the data of a stream's ``error`` event)."""

    type: Literal["error"] = "error"
    error: AnthropicErrorDetail
