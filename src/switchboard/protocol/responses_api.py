"""OpenAI's Responses API (``POST /v1/responses``) as pydantic models: the request and its input
items, the response object and its output items, the events of its stream, and the lists of
``GET /v1/responses/{id}/input_items``.

(``protocol/responses.py`` holds the chat-completion *response* bodies; this module is the other
API of that name.) The request is modelled for what Switchboard can honour: input messages (text
and image parts), ``function_call`` and ``function_call_output`` items, function tools and the
text formats. What it cannot honour fails validation by name with a 400 instead of being dropped:
built-in tools, hosted tool choices, other item types. Unknown top-level fields are kept
(``extra="allow"``); the translation passes them on to the chat request, which names the ones it
does not know in ``x-switchboard-ignored-params``.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
)
from pydantic_core import PydanticCustomError

from switchboard.protocol.chat import INT32_MAX
from switchboard.protocol.limits import (
    MAX_CONTENT_PARTS,
    MAX_MESSAGES,
    MAX_TOOLS,
    SCHEMA_SIZE,
    at_most,
)

PARTS = at_most(MAX_CONTENT_PARTS, "too_many_content_parts", "content parts")
METADATA_PAIRS = 16  # OpenAI's bounds on metadata: 16 pairs, 64-character keys, 512 values


def new_id(prefix: str) -> str:
    """An object id in OpenAI's style: ``resp_…``, ``msg_…``, ``fc_…`` and 48 hex digits."""
    return f"{prefix}_{secrets.token_hex(24)}"


class _Open(BaseModel):
    """Fields OpenAI may add later (``annotations``, ``logprobs``, ``phase``…) are accepted."""

    model_config = ConfigDict(extra="allow")


# --- Input items ---------------------------------------------------------------------------


class InputText(_Open):
    type: Literal["input_text"]
    text: str


class InputImage(_Open):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["auto", "low", "high", "original"] = "auto"


class OutputText(_Open):
    """An assistant's text, in its own earlier output sent back as input."""

    type: Literal["output_text"]
    text: str
    annotations: list[Any] = Field(default_factory=list)


class Refusal(_Open):
    type: Literal["refusal"]
    refusal: str


InputPart = Annotated[InputText | InputImage | OutputText | Refusal, Field(discriminator="type")]


class MessageItem(_Open):
    """A message; ``type`` may be left out, as the SDK allows (``{"role", "content"}``)."""

    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: Annotated[str | list[InputPart], PARTS]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FunctionCallItem(_Open):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FunctionCallOutputItem(_Open):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: Annotated[str | list[InputPart], PARTS]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


def _item_type(value: Any) -> str:
    found = value.get("type", "message") if isinstance(value, dict) else getattr(
        value, "type", "message")
    return str(found)


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")],
    Discriminator(_item_type, custom_error_type="unsupported_item",
                  custom_error_message="only message, function_call and function_call_output "
                                       "items are supported"),
]


# --- Tools, tool choice and text formats ----------------------------------------------------


class FunctionToolParam(_Open):
    type: Literal["function"]
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: Annotated[dict[str, Any] | None, SCHEMA_SIZE] = None
    strict: bool | None = None


def _function_tools_only(value: Any) -> Any:
    if isinstance(value, list):
        for tool in value:
            kind = tool.get("type") if isinstance(tool, dict) else None
            if kind != "function":
                raise PydanticCustomError(
                    "unsupported_tool",
                    f"the tool type {kind!r} is not supported: built-in tools (web search, file "
                    "search, computer use, code interpreter, image generation, MCP…) are not "
                    "available here; only function tools are")
    return value


class ToolChoiceFunction(_Open):
    type: Literal["function"]
    name: str


ToolChoice = Literal["none", "auto", "required"] | ToolChoiceFunction


class TextFormatText(_Open):
    type: Literal["text"]


class TextFormatJSONObject(_Open):
    type: Literal["json_object"]


class TextFormatJSONSchema(_Open):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    type: Literal["json_schema"]
    name: str = Field(min_length=1, max_length=64)
    schema_: Annotated[dict[str, Any], SCHEMA_SIZE] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


TextFormat = Annotated[TextFormatText | TextFormatJSONObject | TextFormatJSONSchema,
                       Field(discriminator="type")]


class TextConfig(_Open):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class Reasoning(_Open):
    effort: str | None = None
    summary: str | None = None
    generate_summary: str | None = None


class ResponsesRequest(BaseModel):
    """The body of ``POST /v1/responses``."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, allow_inf_nan=False)

    model: str | None = Field(default=None, description="Model id; the server's default when "
                                                        "omitted.")
    input: Annotated[str | list[InputItem], at_most(MAX_MESSAGES, "too_many_messages",
                                                    "input items")] = Field(
        description="A user message's text, or a list of input items.")
    instructions: str | None = Field(default=None, description="A system message put first "
                                     "(not carried over by previous_response_id).")
    tools: Annotated[list[FunctionToolParam] | None, BeforeValidator(_function_tools_only),
                     at_most(MAX_TOOLS, "too_many_tools", "tools")] = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    max_output_tokens: int | None = Field(default=None, ge=1, le=INT32_MAX)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    metadata: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(
        max_length=512)]] | None = Field(default=None, max_length=METADATA_PAIRS)
    store: bool | None = Field(default=True, description="Keep the response, for "
                               "previous_response_id and GET (default true).")
    previous_response_id: str | None = Field(default=None, max_length=128)
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    user: str | None = None
    truncation: Literal["disabled", "auto"] | None = None
    include: list[str] | None = None
    reasoning: Reasoning | None = None
    background: bool | None = None
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    max_tool_calls: int | None = Field(default=None, ge=1, le=INT32_MAX)
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    context_management: list[Any] | None = None
    service_tier: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _only_function_choices(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("type") != "function":
            raise PydanticCustomError(
                "unsupported_tool_choice",
                f"tool_choice of type {value.get('type')!r} is not supported; use 'auto', "
                "'none', 'required' or {'type': 'function', 'name': ...}")
        return value


# --- The response ---------------------------------------------------------------------------


class OutputTextPart(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)
    logprobs: list[Any] = Field(default_factory=list)


ItemStatus = Literal["in_progress", "completed", "incomplete"]


class OutputMessage(BaseModel):
    id: str
    type: Literal["message"] = "message"
    status: ItemStatus
    role: Literal["assistant"] = "assistant"
    content: list[OutputTextPart]


class FunctionCallOutput(BaseModel):
    """A ``function_call`` output item (what the model asked to run)."""

    id: str
    type: Literal["function_call"] = "function_call"
    status: ItemStatus
    call_id: str
    name: str
    arguments: str


OutputItem = Annotated[OutputMessage | FunctionCallOutput, Field(discriminator="type")]


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponseError(BaseModel):
    code: str
    message: str


ResponseStatus = Literal["completed", "incomplete", "in_progress", "failed"]


class ResponseObject(BaseModel):
    """A response, as answered, streamed (``response.*`` events) and stored."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: ResponseStatus
    background: bool = False
    completed_at: int | None = None
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    model: str
    output: list[OutputItem] = Field(default_factory=list)
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    prompt_cache_key: str | None = None
    reasoning: dict[str, Any] = Field(default_factory=lambda: {"effort": None,
                                                               "summary": None})
    safety_identifier: str | None = None
    service_tier: str = "default"
    store: bool = True
    temperature: float | None = None
    text: dict[str, Any] = Field(default_factory=lambda: {"format": {"type": "text"}})
    tool_choice: str | dict[str, Any] = "auto"
    tools: list[dict[str, Any]] = Field(default_factory=list)
    top_logprobs: int = 0
    top_p: float | None = None
    truncation: Literal["disabled"] = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, Any] | None = Field(
        default=None, description="Switchboard: latency, throughput and cost of this answer.")


class DeletedResponse(BaseModel):
    id: str
    object: Literal["response"] = "response"
    deleted: Literal[True] = True


class InputItemList(BaseModel):
    """``GET /v1/responses/{id}/input_items``: the items the response was generated from."""

    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool

    @classmethod
    def page(cls, items: list[dict[str, Any]], order: Literal["asc", "desc"] = "desc",
             limit: int = 20, after: str | None = None) -> InputItemList:
        """One page of ``items`` (kept oldest first): in ``order``, the ``limit`` items after the
        item ``after`` (from the start without it; none when no item has that id)."""
        ordered = list(items) if order == "asc" else list(reversed(items))
        if after is not None:
            ids = [item.get("id") for item in ordered]
            ordered = ordered[ids.index(after) + 1:] if after in ids else []
        data = ordered[:limit]
        return cls(data=data, first_id=data[0].get("id") if data else None,
                   last_id=data[-1].get("id") if data else None, has_more=len(ordered) > limit)
