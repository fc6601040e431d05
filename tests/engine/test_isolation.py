"""One sequence's failure ends that sequence alone: the others sharing its steps finish with the
tokens they would have produced without it.

The poisons need no monkeypatching: a grammar constraint that breaks mid-generation (as a faulty
grammar engine would), a sink that raises (as a closed event loop does), and the numbers that used
to break beam scoring (a length penalty of ±1000).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from switchboard.engine import (
    Engine,
    EngineConfig,
    EngineError,
    GenerationRequest,
    LlamaModel,
    SamplingParams,
    StepOutput,
)
from switchboard.engine.beam import BeamSearchParams
from switchboard.engine.constraint import Constraint
from switchboard.engine.embedded import embedded_model_path

MAX_TOKENS = 24


class BrokenGrammar(Constraint):
    """A grammar that allows every token for its first questions, then raises (it has no
    llguidance matcher: its mask is all ones and never computed)."""

    def __init__(self, fails_at: int, n_vocab: int) -> None:  # not Constraint.__init__
        self.fails_at = fails_at
        self.questions = 0
        self._matcher = None
        self._pending = object()  # never None: mask_rows computes no mask for it
        self._bits = np.full((n_vocab + 31) // 32, -1, dtype=np.int32)
        self._stopped = False
        self._needed_mask = False

    def _ask(self) -> None:
        self.questions += 1
        if self.questions >= self.fails_at:
            raise RuntimeError("the grammar engine broke")

    def allows(self, token: int) -> bool:
        self._ask()
        return True

    def _wait(self) -> None:  # mask_rows asks here (beam search)
        self._ask()

    def accept(self, token: int, prefetch: bool = True) -> bool:
        return True

    def forced(self) -> list[int]:  # nothing forced: each token is asked about
        return []

    def prefetch_if_needed(self) -> None:
        pass

    def fork(self) -> Constraint:
        return self


class Collector:
    def __init__(self, expected: int = 1, fail_at: int | None = None) -> None:
        self.outputs: list[StepOutput] = []
        self.expected = expected
        self.fail_at = fail_at  # raise on this output (1-based), as a closed event loop does
        self.done = threading.Event()

    def __call__(self, out: StepOutput) -> None:
        self.outputs.append(out)
        if out.finished and sum(o.finished for o in self.outputs) >= self.expected:
            self.done.set()
        if len(self.outputs) == self.fail_at:
            raise RuntimeError("Event loop is closed")

    @property
    def tokens(self) -> list[int]:
        return [t for o in self.outputs for t in o.token_ids]

    @property
    def last(self) -> StepOutput:
        return self.outputs[-1]


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    """A KV stream per sequence (the server's default): a sequence's numbers depend neither on
    who shares its steps nor on who leaves (in one pool a leaver's freed cells can change the
    order others' cells are read in), so bystanders produce exactly the tokens they produce
    alone."""
    config = EngineConfig(max_sequences=6, max_queue=16, cache_slots=0, kv_streams=True)
    model = LlamaModel(embedded_model_path(), n_ctx=6144, n_seq_max=config.sequence_ids,
                       n_threads=2, flash_attn=True, unified_kv=False)
    eng = Engine(model, config)
    yield eng
    eng.shutdown()


def bystanders(reference: dict) -> list[GenerationRequest]:
    """Greedy, seeded sampling (its random generator must not skip a draw), and logprobs."""
    items = reference["items"]
    common = {"max_tokens": MAX_TOKENS, "ignore_eos": True}
    return [
        GenerationRequest(tuple(items[0]["prompt_token_ids"]),
                          SamplingParams(temperature=0.0, **common)),  # type: ignore[arg-type]
        GenerationRequest(tuple(items[1]["prompt_token_ids"]),
                          SamplingParams(temperature=1.0, seed=7, **common)),  # type: ignore[arg-type]
        GenerationRequest(tuple(items[2]["prompt_token_ids"]),
                          SamplingParams(temperature=0.7, top_p=0.9, seed=3, logprobs=True,
                                         top_logprobs=3, **common)),  # type: ignore[arg-type]
    ]


WAIT_S = 600  # generous: the CPU may be shared with other test runs


def alone(engine: Engine, request: GenerationRequest) -> list[int]:
    sink = Collector()
    engine.submit(request, sink)
    assert sink.done.wait(WAIT_S)
    assert sink.last.finish_reason == "length"
    return sink.tokens


def run_together(
    engine: Engine, requests: list[GenerationRequest], poison: GenerationRequest,
    poison_sink: Collector,
) -> list[Collector]:
    sinks = [Collector() for _ in requests]
    for request, sink in zip(requests[:2], sinks[:2]):
        engine.submit(request, sink)
    engine.submit(poison, poison_sink)  # in the middle of the queue and of the batch
    for request, sink in zip(requests[2:], sinks[2:]):
        engine.submit(request, sink)
    for sink in [*sinks, poison_sink]:
        assert sink.done.wait(WAIT_S)
    return sinks


def assert_undisturbed(engine: Engine, sinks: list[Collector], expected: list[list[int]]) -> None:
    for sink, tokens in zip(sinks, expected):
        assert [o.finish_reason for o in sink.outputs if o.finished] == ["length"]
        assert all(o.error is None for o in sink.outputs)
        assert sink.tokens == tokens
    assert engine.stats()["running"] == 0 and engine.stats()["kv_used"] == 0


@pytest.fixture(scope="module")
def expected(engine: Engine, reference: dict) -> list[list[int]]:
    """The bystanders' tokens, each run alone."""
    return [alone(engine, r) for r in bystanders(reference)]


def test_a_sequence_whose_grammar_breaks_ends_alone(
    engine: Engine, reference: dict, expected: list[list[int]]
) -> None:
    requests = bystanders(reference)
    poison = GenerationRequest(
        tuple(reference["items"][3]["prompt_token_ids"]),
        SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, ignore_eos=True),
        constraint=BrokenGrammar(fails_at=4, n_vocab=engine.model.n_vocab),
    )
    poison_sink = Collector()
    sinks = run_together(engine, requests, poison, poison_sink)
    assert poison_sink.last.finish_reason == "error"
    assert "the grammar engine broke" in (poison_sink.last.error or "")
    assert len(poison_sink.tokens) == 3  # it ran alongside the others until it broke
    assert_undisturbed(engine, sinks, expected)


def test_a_beam_search_whose_grammar_breaks_ends_alone(
    engine: Engine, reference: dict, expected: list[list[int]]
) -> None:
    requests = bystanders(reference)
    poison = GenerationRequest(
        tuple(reference["items"][3]["prompt_token_ids"]),
        SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS),
        beam=BeamSearchParams(width=2, n=2),
        constraint=BrokenGrammar(fails_at=5, n_vocab=engine.model.n_vocab),
    )
    poison_sink = Collector()
    sinks = run_together(engine, requests, poison, poison_sink)
    assert [o.finish_reason for o in poison_sink.outputs] == ["error"]
    assert "the grammar engine broke" in (poison_sink.last.error or "")
    assert_undisturbed(engine, sinks, expected)


def test_a_sink_that_raises_ends_only_its_sequence(
    engine: Engine, reference: dict, expected: list[list[int]]
) -> None:
    requests = bystanders(reference)
    poison = GenerationRequest(
        tuple(reference["items"][3]["prompt_token_ids"]),
        SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, ignore_eos=True),
    )
    poison_sink = Collector(fail_at=3)
    sinks = run_together(engine, requests, poison, poison_sink)
    # The sequence ended at the output its sink failed on; it was told why, and nothing else.
    assert [o.finish_reason for o in poison_sink.outputs] == [None, None, None, "error"]
    assert "Event loop is closed" in (poison_sink.last.error or "")
    assert_undisturbed(engine, sinks, expected)


@pytest.mark.parametrize("length_penalty", [1000.0, -1000.0])
def test_extreme_length_penalties_score_without_overflow(
    engine: Engine, reference: dict, expected: list[list[int]], length_penalty: float
) -> None:
    """These used to raise in the step ("Numerical result out of range", "float division by
    zero") and end every sequence of the server."""
    requests = bystanders(reference)
    beam = GenerationRequest(
        tuple(reference["items"][3]["prompt_token_ids"]),
        SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS),
        beam=BeamSearchParams(width=3, n=3, length_penalty=length_penalty,
                              early_stopping="never"),
    )
    beam_sink = Collector(expected=3)
    sinks = run_together(engine, requests, beam, beam_sink)
    finished = [o for o in beam_sink.outputs if o.finished]
    assert sorted(o.choice for o in finished) == [0, 1, 2]
    assert all(o.finish_reason in ("stop", "length") for o in finished)
    assert all(math.isfinite(o.cumulative_logprob or 0.0) for o in finished)
    assert_undisturbed(engine, sinks, expected)


@pytest.mark.parametrize(
    "params,beam,named",
    [
        ({"temperature": math.nan}, None, "temperature"),
        ({"top_p": math.inf}, None, "top_p"),
        ({"repetition_penalty": 1e-30}, None, "repetition_penalty"),
        ({"frequency_penalty": 1e6}, None, "frequency_penalty"),
        ({"logit_bias": {0: math.inf}}, None, "logit_bias"),
        ({"logit_bias": {10**9: 1.0}}, None, "logit_bias"),
        ({"logit_bias": {-1: 1.0}}, None, "logit_bias"),
        ({"stop_token_ids": (-5,)}, None, "stop_token_ids"),
        ({"top_logprobs": 10**9, "logprobs": True}, None, "top_logprobs"),
        ({}, BeamSearchParams(width=2, n=2, length_penalty=math.nan), "length_penalty"),
        ({}, BeamSearchParams(width=2, n=3), "n=3"),
    ],
)
def test_numbers_the_arithmetic_cannot_take_are_refused_at_submit(
    engine: Engine, params: dict, beam: BeamSearchParams | None, named: str
) -> None:
    request = GenerationRequest((1, 2, 3), SamplingParams(max_tokens=4, **params), beam=beam)
    with pytest.raises(EngineError, match=named):
        engine.submit(request, Collector())
    assert engine.stats()["waiting"] == 0


def test_a_tiny_temperature_samples_greedily(engine: Engine, reference: dict) -> None:
    prompt = tuple(reference["items"][0]["prompt_token_ids"])
    greedy = alone(engine, GenerationRequest(
        prompt, SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)))
    tiny = alone(engine, GenerationRequest(
        prompt, SamplingParams(temperature=1e-300, max_tokens=8, ignore_eos=True)))
    assert tiny == greedy
