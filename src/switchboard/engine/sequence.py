"""A sequence being generated: its tokens, KV position, sampling state and output sink."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from switchboard.engine.beam import BeamState
from switchboard.engine.constraint import Constraint
from switchboard.engine.detokenizer import TextStream
from switchboard.engine.request import (
    GenerationRequest,
    RequestMetrics,
    StepOutput,
    TokenLogprob,
)
from switchboard.engine.sampler import SequenceSampling, make_rng

OutputSink = Callable[[StepOutput], None]


class SequenceStatus(Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass
class BeamGroup:
    """The live beams of one beam-search request. ``owner`` is the request's own sequence (its
    sink, handle and timings); it starts as the only beam and may later be dropped as one."""

    state: BeamState
    owner: Sequence
    beams: list[Sequence] = field(default_factory=list)
    reserved_ids: list[int] = field(default_factory=list)  # slots for beams not yet spawned
    constraints: list[Constraint] = field(default_factory=list)  # per live beam, if constrained

    @property
    def width(self) -> int:
        return self.state.params.width


@dataclass
class DraftStats:
    """A sequence's speculative drafts (``speculative``): tokens drafted and accepted, and its
    recent acceptance rate, which sets the next draft's length."""

    drafted: int = 0
    accepted: int = 0
    rate: float = 0.5  # moving average of the accepted share of each draft

    def length(self, longest: int) -> int:
        return max(1, min(longest, round(self.rate * longest)))

    def record(self, drafted: int, accepted: int) -> None:
        self.drafted += drafted
        self.accepted += accepted
        if drafted:
            self.rate = 0.5 * self.rate + 0.5 * accepted / drafted


class Sequence:
    """Tokens ``[0, n_past)`` are in the KV cache; ``tokens[n_past:]`` still have to be fed."""

    def __init__(
        self,
        request: GenerationRequest,
        sink: OutputSink,
        n_vocab: int,
        max_new_tokens: int,
    ) -> None:
        self.request = request
        self.params = request.params
        self.sink = sink
        self.tokens: list[int] = list(request.prompt_tokens)
        self.n_prompt = len(self.tokens)
        self.n_past = 0
        self.max_new_tokens = max_new_tokens
        self.seq_id = -1
        self.source: Sequence | None = None  # holder of the first shared_len cells
        self.shared_len = 0
        self.children: list[Sequence] = []
        self.cached_prefix = 0  # prompt tokens served from the prefix cache
        self.group: BeamGroup | None = None
        self.constraint = request.constraint
        self.cumulative_logprob = 0.0  # kept when params.cumulative_logprob
        self.prompt_logprobs: list[TokenLogprob] = []  # when params.prompt_logprobs (see there)
        self._prompt_logprobs_sent = False
        self.drafts = DraftStats()
        self.status = SequenceStatus.WAITING
        self.cancelled = False
        self.holds_queue_slot = True
        self.sampling = SequenceSampling(
            params=self.params,
            rng=make_rng(self.params.seed, request.seed_offset),
            n_vocab=n_vocab,
            prompt_tokens=request.prompt_tokens,
        )
        self.text = TextStream(self.params.stop, self.params.include_stop_str_in_output)
        self.arrived_at = time.monotonic()
        self.scheduled_at: float | None = None
        self.first_token_at: float | None = None

    @property
    def slots(self) -> int:
        """Sequence slots this sequence needs when admitted (a beam search takes its width)."""
        return self.group.width if self.group is not None else 1

    def fork(self) -> Sequence:
        """A new beam continuing this one (tokens copied; KV cells are the caller's business)."""
        twin = Sequence(self.request, self.sink, self.sampling.n_vocab, self.max_new_tokens)
        twin.tokens = list(self.tokens)
        twin.n_past = self.n_past
        twin.group = self.group
        twin.status = self.status
        twin.arrived_at = self.arrived_at
        twin.holds_queue_slot = False
        return twin

    @property
    def n_pending(self) -> int:
        return len(self.tokens) - self.n_past

    @property
    def decoding(self) -> bool:
        """Its prompt is read: its pending tokens are ones it generated (a sampled token and the
        tokens a grammar forced after it), not a prompt (nor one recomputed after preemption)."""
        return self.n_past >= self.n_prompt and self.n_pending > 0

    @property
    def n_generated(self) -> int:
        return len(self.tokens) - self.n_prompt

    def finish(self, reason: str, output: StepOutput | None = None) -> None:
        out = output or StepOutput()
        out.finish_reason = reason
        out.metrics = self.metrics()
        if self.params.cumulative_logprob:
            out.cumulative_logprob = self.cumulative_logprob
        self.status = SequenceStatus.FINISHED
        self.emit(out)

    def metrics(self) -> RequestMetrics:
        now = time.monotonic()
        scheduled = self.scheduled_at or now
        first = self.first_token_at or now
        return RequestMetrics(
            queue_time=scheduled - self.arrived_at,
            time_to_first_token=first - self.arrived_at,
            decode_time=now - first,
            prompt_tokens=self.n_prompt,
            cached_tokens=self.cached_prefix,
            generated_tokens=self.n_generated,
            spec_drafted_tokens=self.drafts.drafted,
            spec_accepted_tokens=self.drafts.accepted,
        )

    def emit(self, out: StepOutput) -> None:
        if self.params.prompt_logprobs is not None and not self._prompt_logprobs_sent:
            out.prompt_logprobs, self._prompt_logprobs_sent = self.prompt_logprobs, True
        out.prompt_tokens = self.n_prompt
        out.completion_tokens = self.n_generated
        out.cached_tokens = self.cached_prefix
        self.sink(out)
