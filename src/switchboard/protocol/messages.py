"""Chat messages and tool definitions as the OpenAI chat-completions API spells them.

Owns the pydantic models of what goes into ``messages`` and ``tools``; nothing here knows how a
message becomes a prompt (that is :mod:`switchboard.engine.template`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from switchboard.protocol.limits import MAX_CONTENT_PARTS, SCHEMA_SIZE, at_most

# unknown fields are kept, so a request forwarded upstream arrives as the client wrote it
_KEEP_UNKNOWN = ConfigDict(extra="allow")


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextPart(_Part):
    type: Literal["text"]
    text: str


class ImageURL(BaseModel):
    model_config = _KEEP_UNKNOWN
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Part):
    type: Literal["image_url"]
    image_url: ImageURL


class InputAudio(BaseModel):
    model_config = _KEEP_UNKNOWN
    data: str
    format: str


class AudioPart(_Part):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FilePart(_Part):
    type: Literal["file"]
    file: dict[str, Any]


class RefusalPart(_Part):
    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[
    TextPart | ImagePart | AudioPart | FilePart | RefusalPart, Field(discriminator="type")
]


class FunctionCall(BaseModel):
    """A function call made by the assistant (``arguments`` is a JSON-encoded string)."""

    model_config = _KEEP_UNKNOWN

    name: str
    arguments: str


class ToolCall(BaseModel):
    model_config = _KEEP_UNKNOWN
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")


PARTS = at_most(MAX_CONTENT_PARTS, "too_many_content_parts", "content parts")


class DeveloperMessage(_Message):
    role: Literal["developer"]
    content: Annotated[str | list[TextPart], PARTS]
    name: str | None = None


class SystemMessage(_Message):
    role: Literal["system"]
    content: Annotated[str | list[TextPart], PARTS]
    name: str | None = None


class UserMessage(_Message):
    role: Literal["user"]
    content: Annotated[str | list[ContentPart], PARTS]
    name: str | None = None


class AssistantMessage(_Message):
    role: Literal["assistant"]
    content: Annotated[str | list[TextPart | RefusalPart] | None, PARTS] = None
    refusal: str | None = None
    name: str | None = None
    audio: dict[str, Any] | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None


class ToolMessage(_Message):
    role: Literal["tool"]
    content: Annotated[str | list[TextPart], PARTS]
    tool_call_id: str


class FunctionMessage(_Message):
    role: Literal["function"]
    content: str | None
    name: str


ChatMessage = Annotated[
    DeveloperMessage | SystemMessage | UserMessage | AssistantMessage | ToolMessage
    | FunctionMessage,
    Field(discriminator="role"),
]


class FunctionDefinition(BaseModel):
    model_config = _KEEP_UNKNOWN
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: Annotated[dict[str, Any] | None, SCHEMA_SIZE] = None
    strict: bool | None = None


class FunctionTool(BaseModel):
    model_config = _KEEP_UNKNOWN
    type: Literal["function"]
    function: FunctionDefinition


class RetrievalSpec(BaseModel):
    """Telnyx extension: search these document buckets and put the results into the prompt."""

    model_config = ConfigDict(extra="allow")
    bucket_ids: list[str] = Field(min_length=1)
    max_num_results: int | None = Field(default=None, ge=1, le=100)


class RetrievalTool(BaseModel):
    type: Literal["retrieval"]
    retrieval: RetrievalSpec


class CustomTool(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["custom"]
    custom: dict[str, Any]


Tool = Annotated[FunctionTool | RetrievalTool | CustomTool, Field(discriminator="type")]


class NamedFunction(BaseModel):
    model_config = _KEEP_UNKNOWN
    name: str


class NamedToolChoice(BaseModel):
    model_config = _KEEP_UNKNOWN
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice | dict[str, Any]


def text_of(content: str | list[Any] | None) -> str:
    """The text of a message's content: the string itself or its text parts joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(
        part.text if isinstance(part, TextPart) else getattr(part, "refusal", "") or ""
        for part in content
    )


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the conversation's last user message (text parts joined by spaces)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""
