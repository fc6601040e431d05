"""The ``POST /v1/chat/completions`` request body.

Standard OpenAI fields come first, in the order of OpenAI's API reference; the extensions that the
seed APIs add (vLLM / Telnyx sampling, beam search, guided decoding, LLMstudio's session id) follow,
grouped and described. Ranges are validated here so that every layer behind this one can trust them:
every number has a lower and an upper bound (OpenAI's, else vLLM's, else one that keeps the engine's
float arithmetic finite), so no client value reaches arithmetic unbounded.
Unknown fields are kept (``extra="allow"``) so the HTTP layer can name them in
``x-switchboard-ignored-params`` instead of silently dropping them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from switchboard.protocol.limits import (
    MAX_CHOICES,
    MAX_MESSAGES,
    MAX_TOOLS,
    SCHEMA_SIZE,
    at_most,
)
from switchboard.protocol.messages import ChatMessage, FunctionDefinition, Tool, ToolChoice

INT32_MAX = 2**31 - 1  # bound of token counts and token ids (llama.cpp's are 32-bit)
LENGTH_PENALTY_LIMIT = 10.0  # |length_penalty|; Hugging Face's useful range is about 0 to 2


class JSONSchemaFormat(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")

    name: str = Field(default="response", max_length=64)
    description: str | None = None
    schema_: Annotated[dict[str, Any] | None, SCHEMA_SIZE] = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool | None = None
    include_obfuscation: bool | None = None
    continuous_usage_stats: bool | None = Field(
        default=None, description="vLLM extension: put usage on every chunk."
    )


class StructuredOutputs(BaseModel):
    """vLLM's ``structured_outputs`` parameter: exactly one constraint."""

    model_config = ConfigDict(extra="forbid")
    json_: Annotated[dict[str, Any] | str | None, SCHEMA_SIZE] = Field(default=None, alias="json")
    regex: str | None = None
    choice: Annotated[list[str] | None, at_most(MAX_CHOICES, "too_many_choices", "choices")] = None
    grammar: str | None = None


class ChatCompletionRequest(BaseModel):
    # NaN and infinities are valid Python JSON but no sampling parameter's value.
    model_config = ConfigDict(extra="allow", populate_by_name=True, allow_inf_nan=False)

    # --- Standard OpenAI fields, in the order of OpenAI's API reference -----------------------
    messages: Annotated[
        list[ChatMessage], at_most(MAX_MESSAGES, "too_many_messages", "messages")
    ] = Field(min_length=1, description="The conversation so far.")
    model: str | None = Field(
        default=None, description="Model id; the server's default model when omitted."
    )
    audio: dict[str, Any] | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    function_call: Literal["none", "auto"] | dict[str, Any] | None = Field(
        default=None, description="Deprecated in favour of tool_choice."
    )
    functions: Annotated[
        list[FunctionDefinition] | None, at_most(MAX_TOOLS, "too_many_tools", "functions")
    ] = Field(
        default=None, description="Deprecated in favour of tools."
    )
    logit_bias: dict[str, float] | None = Field(
        default=None, description="Token id (as a string) to a bias between -100 and 100."
    )
    logprobs: bool | None = None
    max_completion_tokens: int | None = Field(default=None, ge=1, le=INT32_MAX)
    max_tokens: int | None = Field(
        default=None, ge=0, le=INT32_MAX,
        description="Deprecated alias. 0 only with echo: the prompt is scored, nothing generated.",
    )
    metadata: dict[str, str] | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    n: int = Field(default=1, ge=1, le=128)
    parallel_tool_calls: bool | None = None
    prediction: dict[str, Any] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    reasoning_effort: str | None = None
    response_format: ResponseFormat | None = None
    safety_identifier: str | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**64 - 1)
    service_tier: str | None = None
    stop: str | list[str] | None = None
    store: bool | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    tool_choice: ToolChoice | None = None
    tools: Annotated[list[Tool] | None, at_most(MAX_TOOLS, "too_many_tools", "tools")] = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    user: str | None = None
    verbosity: str | None = None
    web_search_options: dict[str, Any] | None = None

    # --- Sampling extensions (vLLM, Telnyx) ---------------------------------------------------
    top_k: int | None = Field(
        default=None, ge=-1, le=INT32_MAX,
        description="Keep the k most likely tokens; 0 or -1 disables.",
    )
    min_p: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Drop tokens below min_p x the top probability."
    )
    repetition_penalty: float | None = Field(
        default=None, ge=0.01, le=10.0,
        description="Multiplicative penalty on seen tokens, 0.01 to 10; 1 = off.",
    )
    min_tokens: int | None = Field(
        default=None, ge=0, le=INT32_MAX,
        description="Suppress end-of-sequence and stops before this many tokens.",
    )
    ignore_eos: bool | None = Field(
        default=None, description="Keep generating past end-of-sequence."
    )
    stop_token_ids: list[Annotated[int, Field(ge=0, le=INT32_MAX)]] | None = Field(
        default=None, description="Stop when one of these token ids is generated."
    )
    include_stop_str_in_output: bool | None = Field(
        default=None, description="Keep the matched stop string at the end of the output."
    )
    skip_special_tokens: bool | None = Field(
        default=None, description="Drop special tokens from the text (default true)."
    )

    # --- Beam search (Telnyx) -----------------------------------------------------------------
    use_beam_search: bool | None = Field(default=None, description="Return the best n beams.")
    best_of: int | None = Field(
        default=None, ge=1, le=128, description="Candidates generated; the best n are returned."
    )
    length_penalty: float | None = Field(
        default=None, ge=-LENGTH_PENALTY_LIMIT, le=LENGTH_PENALTY_LIMIT,
        description="Beam score = logprob / length**length_penalty, between -10 and 10.",
    )
    early_stopping: bool | Literal["never"] | None = Field(
        default=None, description="Beam search stopping rule (Hugging Face semantics)."
    )

    # --- Structured output (Telnyx / vLLM-legacy names, and vLLM's current one) ---------------
    guided_json: Annotated[dict[str, Any] | str | None, SCHEMA_SIZE] = Field(
        default=None, description="Constrain the output to this JSON Schema."
    )
    guided_regex: str | None = Field(default=None, description="Constrain the output to a regex.")
    guided_choice: Annotated[
        list[str] | None, at_most(MAX_CHOICES, "too_many_choices", "choices")
    ] = Field(
        default=None, description="Constrain the output to one of these strings."
    )
    guided_grammar: str | None = Field(default=None, description="Constrain to a grammar.")
    structured_outputs: StructuredOutputs | None = None

    # --- Prompt scoring and raw prompts (vLLM's chat fields; what /v1/completions needs) ------
    echo: bool | None = Field(
        default=None,
        description="vLLM: start the answer with the prompt. Served for a raw prompt (the "
        "completions API): each choice's text begins with its prompt.",
    )
    prompt_logprobs: int | None = Field(
        default=None, ge=0, le=20,
        description="vLLM: score every prompt token in its context, with this many most likely "
        "alternatives each. Served for a raw prompt on a local model.",
    )
    # Not a wire field: set by the completions adapter (never from a client's JSON, see
    # _no_client_raw_prompts) and never sent upstream, which gets ``messages`` instead. A local
    # model runs these prompts verbatim, no chat template: a string (tokenized with the BOS the
    # vocabulary asks for) or token ids; each prompt gives n choices.
    raw_prompts: SkipJsonSchema[list[str | list[int]] | None] = Field(default=None, exclude=True)

    # --- Gateway and tracking -----------------------------------------------------------------
    api_key_ref: str | None = Field(
        default=None, description="Telnyx: name of a stored upstream provider key to use."
    )
    session_id: str | None = Field(
        default=None, description="LLMstudio: groups requests of one conversation."
    )

    @field_validator("logit_bias")
    @classmethod
    def _check_logit_bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return value
        for key, bias in value.items():
            if not (key.isascii() and key.isdigit()) or len(key) > 10 or int(key) > INT32_MAX:
                raise ValueError(f"logit_bias keys must be token ids, got {key!r}")
            if not -100.0 <= bias <= 100.0:
                raise ValueError(f"logit_bias values must be between -100 and 100, got {bias}")
        return value

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if len(value) > 16:
                raise ValueError("at most 16 stop sequences")
            if any(s == "" for s in value):
                raise ValueError("stop sequences must not be empty")
        return value

    @model_validator(mode="before")
    @classmethod
    def _no_client_raw_prompts(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("raw_prompts") is not None:
            raise ValueError("raw_prompts is not a request field; send a prompt to "
                             "/v1/completions")
        return data

    @model_validator(mode="after")
    def _check_combinations(self) -> ChatCompletionRequest:
        if self.max_tokens == 0 and not self.echo:
            raise ValueError("max_tokens 0 needs echo (it scores the prompt alone)")
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs to be true")
        if self.best_of is not None and self.best_of < self.n:
            raise ValueError("best_of must be greater than or equal to n")
        limit = self.completion_limit
        if self.min_tokens and limit is not None and self.min_tokens > limit:
            raise ValueError(f"min_tokens ({self.min_tokens}) must not exceed max_tokens ({limit})")
        return self

    # --- Derived values ------------------------------------------------------------------------
    _wire: dict[str, Any] | None = PrivateAttr(default=None)

    def wire(self) -> dict[str, Any]:
        """The request as JSON, as the client sent it (unknown fields included, defaults it
        did not send left out): what an OpenAI-compatible upstream is sent. Serialized once
        (a large request is costly to dump); each call returns a new top-level dict whose
        nested values are shared, so treat those as read-only."""
        if self._wire is None:
            self._wire = self.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return dict(self._wire)

    def model_copy(self, *, update: Mapping[str, Any] | None = None,
                   deep: bool = False) -> ChatCompletionRequest:
        copy = super().model_copy(update=update, deep=deep)
        copy._wire = None  # the copy may differ: serialized again when asked
        return copy

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_"):
            self._wire = None
        super().__setattr__(name, value)

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def completion_limit(self) -> int | None:
        """``max_completion_tokens`` wins over the deprecated ``max_tokens`` (0: none)."""
        return self.max_tokens if self.max_completion_tokens is None else \
            self.max_completion_tokens

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def ignored_params(self) -> list[str]:
        """Top-level fields this server does not know; reported, never silently dropped."""
        return sorted(self.model_extra or {})
