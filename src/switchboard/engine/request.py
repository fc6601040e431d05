"""What goes into the engine and what comes out of it, free of any web or wire-format types.

``SamplingParams`` are validated and defaulted by the caller; ``check_request`` still refuses,
at submission, any value the engine's arithmetic cannot take (whoever the caller is), so that no
number from a client reaches a step unbounded. ``StepOutput`` is what one engine step produced for
one sequence (a text delta that never contains part of a stop string).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from switchboard.engine.beam import BeamSearchParams

if TYPE_CHECKING:
    from switchboard.engine.constraint import Constraint

# A temperature below this samples greedily (vLLM's rule): dividing by it would overflow float32.
SAMPLING_EPS = 1e-5


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    seed: int | None = None
    max_tokens: int | None = None  # None: up to the context's end; 0: read the prompt only
    min_tokens: int = 0
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True
    logprobs: bool = False
    top_logprobs: int = 0
    cumulative_logprob: bool = False  # report the sampled tokens' total logprob (best_of ranking)
    # score the prompt's tokens, with this many alternatives each (None: not computed)
    prompt_logprobs: int | None = None
    # report the logprob of a token that ends generation (end-of-generation, stop_token_ids), as
    # legacy completions list it (chat's logprobs leave it out, as OpenAI's do)
    stop_token_logprob: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature < SAMPLING_EPS or self.top_k == 1

    @property
    def penalized(self) -> bool:
        return (
            self.frequency_penalty != 0.0
            or self.presence_penalty != 0.0
            or self.repetition_penalty != 1.0
        )


@dataclass(frozen=True)
class GenerationRequest:
    """One sequence to generate: a tokenized prompt and how to sample its continuation."""

    prompt_tokens: tuple[int, ...]
    params: SamplingParams
    seed_offset: int = 0  # choice index, so n choices with one seed differ but stay reproducible
    beam: BeamSearchParams | None = None  # beam search instead of sampling: n outputs at the end
    constraint: Constraint | None = None  # grammar the output must follow (one per sequence)
    lane: str | None = None  # a dedicated deployment's name: runs in its reserved capacity
    tenant: str | None = None  # who asked (an API key's id): admission takes turns by tenant


# The engine's own bounds: wider than the API's, narrow enough that float32 scores stay finite.
_PENALTY_LIMIT = 100.0
_BIAS_LIMIT = 1000.0
_LENGTH_PENALTY_LIMIT = 1000.0
_TOKEN_LIMIT = 2**31 - 1


def check_request(request: GenerationRequest, n_vocab: int) -> None:
    """Raise ``EngineError`` naming the first value the engine cannot compute with."""
    p = request.params
    floats = {
        "temperature": p.temperature, "top_p": p.top_p, "min_p": p.min_p,
        "frequency_penalty": p.frequency_penalty, "presence_penalty": p.presence_penalty,
        "repetition_penalty": p.repetition_penalty,
    }
    for name, value in floats.items():
        if not math.isfinite(value):
            raise EngineError(f"{name} must be a finite number, got {value}")
    ranges = {
        "temperature": (p.temperature, 0.0, math.inf),
        "top_p": (p.top_p, 0.0, 1.0),
        "min_p": (p.min_p, 0.0, 1.0),
        "frequency_penalty": (p.frequency_penalty, -_PENALTY_LIMIT, _PENALTY_LIMIT),
        "presence_penalty": (p.presence_penalty, -_PENALTY_LIMIT, _PENALTY_LIMIT),
        "repetition_penalty": (p.repetition_penalty, 1 / _PENALTY_LIMIT, _PENALTY_LIMIT),
        "top_k": (p.top_k, 0, _TOKEN_LIMIT),
        "min_tokens": (p.min_tokens, 0, _TOKEN_LIMIT),
        "max_tokens": (1 if p.max_tokens is None else p.max_tokens, 0, _TOKEN_LIMIT),
        "top_logprobs": (p.top_logprobs, 0, n_vocab),
        "prompt_logprobs": (p.prompt_logprobs or 0, 0, n_vocab),
    }
    for name, (value, low, high) in ranges.items():
        if not low <= value <= high:
            raise EngineError(f"{name} must be between {low} and {high}, got {value}")
    for token, bias in p.logit_bias.items():
        if not 0 <= token < n_vocab:
            raise EngineError(f"logit_bias token id {token} is outside the vocabulary")
        if not (math.isfinite(bias) and abs(bias) <= _BIAS_LIMIT):
            raise EngineError(f"logit_bias for token {token} must be a finite number, got {bias}")
    for token in p.stop_token_ids:
        if not 0 <= token < n_vocab:
            raise EngineError(f"stop_token_ids holds {token}, outside the vocabulary")
    beam = request.beam
    if beam is not None:
        if p.prompt_logprobs is not None or p.max_tokens == 0:
            raise EngineError("beam search cannot score a prompt alone (prompt_logprobs, "
                              "max_tokens 0)")
        if not 1 <= beam.n <= beam.width:
            raise EngineError(f"beam search needs 1 <= n <= best_of, got n={beam.n}, "
                              f"best_of={beam.width}")
        if not (math.isfinite(beam.length_penalty)
                and abs(beam.length_penalty) <= _LENGTH_PENALTY_LIMIT):
            raise EngineError(f"length_penalty must be a finite number, got {beam.length_penalty}")
        if beam.early_stopping not in (True, False, "never"):
            raise EngineError(f"early_stopping must be true, false or 'never', "
                              f"got {beam.early_stopping!r}")


@dataclass(frozen=True)
class TopToken:
    token_id: int
    text: bytes
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    token_id: int
    text: bytes
    logprob: float
    top: tuple[TopToken, ...]


@dataclass(frozen=True)
class RequestMetrics:
    """Timings of one finished sequence (seconds), measured in the engine thread."""

    queue_time: float  # submitted -> first scheduled
    time_to_first_token: float  # submitted -> first token sampled
    decode_time: float  # first token -> last token
    prompt_tokens: int
    cached_tokens: int
    generated_tokens: int
    spec_drafted_tokens: int = 0  # speculative tokens fed (see ``speculative``)
    spec_accepted_tokens: int = 0  # of which the model agreed with

    @property
    def time_per_output_token(self) -> float:
        return self.decode_time / max(1, self.generated_tokens - 1)


@dataclass
class StepOutput:
    """New output of one sequence after one engine step (or its end)."""

    text: str = ""
    choice: int = 0  # which of a beam search's outputs (sampled sequences: always 0)
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None  # "stop" | "length" | "error"
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    metrics: RequestMetrics | None = None  # set on the last output
    cumulative_logprob: float | None = None  # beam search: the hypothesis' total logprob
    # with the first output of a sequence that asked for them: entry j scores prompt token j + 1
    prompt_logprobs: list[TokenLogprob] | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


class EngineError(RuntimeError):
    """The engine cannot take or run a request (reason meant for the client)."""


class EngineOverloaded(EngineError):
    """The waiting queue is full; the caller should retry later."""

    def __init__(self, retry_after_s: int = 1) -> None:
        super().__init__("the server is at capacity; retry shortly")
        self.retry_after_s = retry_after_s


class PromptTooLong(EngineError):
    """Prompt plus requested completion exceed the context (worded as OpenAI words it)."""

    def __init__(self, prompt_tokens: int, limit: int, completion_tokens: int = 0) -> None:
        if completion_tokens:
            asked = (f"you requested {prompt_tokens + completion_tokens} tokens ({prompt_tokens} "
                     f"in the messages, {completion_tokens} in the completion)")
        else:
            asked = f"your messages resulted in {prompt_tokens} tokens"
        super().__init__(
            f"This model's maximum context length is {limit} tokens. However, {asked}. "
            "Please reduce the length of the messages or completion."
        )
        self.prompt_tokens = prompt_tokens
        self.limit = limit
