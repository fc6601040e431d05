"""The ``POST /v1/completions`` (OpenAI's legacy text completions, with vLLM's extensions) and
``POST /tokenize`` / ``POST /detokenize`` (vLLM's) wire models.

A completion request declares OpenAI's legacy fields itself; the sampling, structured-output and
gateway fields it shares with the chat request (vLLM's ``top_k``, ``guided_json``…) are declared
once, on ``ChatCompletionRequest``, and copied here with their bounds and descriptions. Unknown
fields are kept (``extra="allow"``) to be reported in ``x-switchboard-ignored-params``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from switchboard.protocol.chat import INT32_MAX, ChatCompletionRequest, StreamOptions
from switchboard.protocol.limits import (
    LIMIT_CODES,
    MAX_MESSAGES,
    MAX_PROMPTS,
    MAX_TOOLS,
    at_most,
)
from switchboard.protocol.messages import ChatMessage, Tool
from switchboard.protocol.responses import Usage

TokenId = Annotated[int, Field(ge=0, le=INT32_MAX)]
TokenIds = Annotated[list[TokenId], Field(min_length=1)]
Prompt = (
    str
    | Annotated[list[str], Field(min_length=1), at_most(MAX_PROMPTS, "too_many_prompts", "prompts")]
    | TokenIds
    | Annotated[list[TokenIds], Field(min_length=1),
                at_most(MAX_PROMPTS, "too_many_prompts", "prompts")]
)
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for a text completion

# The chat request's fields a completion request takes as they are (sampling, vLLM's extensions,
# structured output, gateway and tracking).
SHARED_FIELDS = (
    "frequency_penalty", "logit_bias", "metadata", "presence_penalty", "seed", "service_tier",
    "stop", "temperature", "top_p", "user", "response_format",
    "top_k", "min_p", "repetition_penalty", "min_tokens", "ignore_eos", "stop_token_ids",
    "include_stop_str_in_output", "skip_special_tokens",
    "use_beam_search", "best_of", "length_penalty", "early_stopping",
    "guided_json", "guided_regex", "guided_choice", "guided_grammar", "structured_outputs",
    "api_key_ref", "session_id",
)

_Shared: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "CompletionSharedFields",
    __config__=ConfigDict(extra="allow", populate_by_name=True, allow_inf_nan=False),
    **{name: (ChatCompletionRequest.model_fields[name].annotation,
              ChatCompletionRequest.model_fields[name]) for name in SHARED_FIELDS},
)


class CompletionRequest(_Shared):  # type: ignore[misc,valid-type]
    """OpenAI's legacy completion request: OpenAI's fields, then the shared ones."""

    model: str | None = Field(
        default=None, description="Model id; the server's default model when omitted."
    )
    prompt: Prompt = Field(
        description="A string, a list of strings, a list of token ids, or a list of token-id "
        "lists. Each prompt gives n choices, numbered prompt_index * n + i."
    )
    suffix: str | None = Field(
        default=None, description="Text after the completion (fill in the middle): refused, the "
        "models served cannot fill in the middle."
    )
    max_tokens: int | None = Field(
        default=DEFAULT_MAX_TOKENS, ge=0, le=INT32_MAX,
        description="Tokens to generate per choice (default 16); 0 with echo scores the prompt "
        "alone.",
    )
    n: int = Field(default=1, ge=1, le=128)
    logprobs: int | None = Field(
        default=None, ge=0, le=20,
        description="Report each token's logprob and this many most likely alternatives.",
    )
    echo: bool | None = Field(
        default=False, description="Start each choice's text with its prompt (and, with "
        "logprobs, score the prompt's tokens; the first one's logprob is null)."
    )
    stream: bool | None = False
    stream_options: StreamOptions | None = None

    @field_validator("prompt", mode="wrap")
    @classmethod
    def _one_prompt_shape(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """One clear error for a prompt of no accepted shape (not one per shape tried)."""
        try:
            return handler(value)
        except ValidationError as exc:
            limit = next((e for e in exc.errors() if e["type"] in LIMIT_CODES), None)
            if limit is not None:
                raise PydanticCustomError(limit["type"], limit["msg"]) from None
            raise ValueError(
                "prompt must be a string, a list of strings, a list of token ids (0 to "
                f"{INT32_MAX}) or a list of token-id lists, none of them empty") from None

    @model_validator(mode="after")
    def _check_combinations(self) -> CompletionRequest:
        if self.max_tokens == 0 and not self.echo:
            raise ValueError("max_tokens 0 needs echo (it scores the prompt alone)")
        best_of = getattr(self, "best_of", None)
        if best_of is not None and best_of < self.n:
            raise ValueError("best_of must be greater than or equal to n")
        return self

    @property
    def prompts(self) -> list[str | list[int]]:
        """The prompts, one per entry (a string or token ids)."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if prompt and isinstance(prompt[0], int):
            return [list(prompt)]  # type: ignore[arg-type]
        return list(prompt)  # type: ignore[arg-type]

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def ignored_params(self) -> list[str]:
        """Top-level fields this server does not know; reported, never silently dropped."""
        return sorted(self.model_extra or {})


class CompletionLogprobs(BaseModel):
    """OpenAI's legacy logprobs: parallel lists, one entry per token."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: Literal["stop", "length", "content_filter"] | None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    metrics: dict[str, Any] | None = Field(
        default=None, description="Switchboard: tokens, cost and latency of this request."
    )


# --- /tokenize and /detokenize (vLLM) ------------------------------------------------------------

class TokenizePromptRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    prompt: str
    add_special_tokens: bool = Field(
        default=True, description="Add the BOS (and EOS) the vocabulary asks for."
    )
    return_token_strs: bool = Field(default=False, description="Also return each token's text.")


class TokenizeChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    messages: Annotated[
        list[ChatMessage], at_most(MAX_MESSAGES, "too_many_messages", "messages")
    ] = Field(min_length=1)
    add_generation_prompt: bool = Field(
        default=True, description="End with the assistant's turn opening, as a generation does."
    )
    tools: Annotated[list[Tool] | None, at_most(MAX_TOOLS, "too_many_tools", "tools")] = None
    add_special_tokens: bool = Field(
        default=False, description="Accepted for vLLM's sake: the chat template writes the "
        "special tokens itself (true is refused)."
    )
    return_token_strs: bool = False


TokenizeRequest = TokenizePromptRequest | TokenizeChatRequest


class TokenizeResponse(BaseModel):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = Field(default=None, exclude_if=lambda v: v is None)


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    tokens: list[TokenId]


class DetokenizeResponse(BaseModel):
    prompt: str
