"""Beam search: the decision rules on synthetic distributions, then on the real model."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from switchboard.engine import (
    Engine,
    EngineConfig,
    GenerationRequest,
    LlamaModel,
    SamplingParams,
    StepOutput,
)
from switchboard.engine.beam import BeamSearchParams, BeamState, Hypothesis
from switchboard.engine.embedded import embedded_model_path
from switchboard.engine.sampler import log_softmax

V = 6
END = 5


def dist(probs: dict[int, float]) -> np.ndarray:
    row = np.full(V, 1e-9)
    for t, p in probs.items():
        row[t] = p
    return np.log(row / row.sum())


def test_beam_finds_what_greedy_misses() -> None:
    # Greedy picks token 1 (0.6) then faces a flat tail; token 2 (0.4) leads to a sure ending.
    state = BeamState(BeamSearchParams(width=2, n=1), max_new_tokens=3, ends=frozenset({END}))
    state.start(dist({1: 0.6, 2: 0.4}))
    assert sorted(g[0] for g in state.generated) == [1, 2]
    rows = []
    for tokens in state.generated:
        rows.append(dist({3: 0.25, 4: 0.25, 0: 0.25, END: 0.25}) if tokens[0] == 1
                    else dist({END: 1.0}))
    state.step(np.vstack(rows))
    best = state.best()[0]
    assert best.tokens == [2] and best.finish_reason == "stop"
    assert best.cum_logprob == pytest.approx(math.log(0.4), abs=1e-6)


def test_early_stopping_true_stops_at_width_finished() -> None:
    params = BeamSearchParams(width=2, n=2, early_stopping=True)
    state = BeamState(params, max_new_tokens=10, ends=frozenset({END}))
    state.start(dist({1: 0.5, 2: 0.5}))
    state.step(np.vstack([dist({END: 0.9, 3: 0.1}), dist({END: 0.9, 4: 0.1})]))
    assert state.done and len(state.finished) == 2


def test_max_tokens_finishes_live_beams_with_length() -> None:
    state = BeamState(BeamSearchParams(width=2, n=2), max_new_tokens=2, ends=frozenset({END}))
    state.start(dist({1: 0.5, 2: 0.5}))
    state.step(np.vstack([dist({3: 1.0} if g == [1] else {4: 1.0}) for g in state.generated]))
    assert state.done
    assert {h.finish_reason for h in state.best()} == {"length"}
    assert sorted(h.tokens for h in state.best()) == [[1, 3], [2, 4]]


def test_length_penalty_prefers_longer_when_positive() -> None:
    short, long = Hypothesis([1], -1.0, "stop", 1), Hypothesis([1, 2, 3], -1.5, "stop", 3)
    assert short.score(0.0) > long.score(0.0)
    assert long.score(2.0) > short.score(2.0)


@pytest.mark.parametrize("streams", [False, True], ids=["unified", "streams"])
def test_beams_on_the_model_score_what_they_say(reference: dict, streams: bool) -> None:
    """Each returned beam's cumulative logprob equals a fresh teacher-forced scoring of its
    tokens: the KV cells moved (or streams copied) between beams belonged to the right
    parents."""
    config = EngineConfig(max_sequences=4, max_queue=4, cache_slots=0, kv_streams=streams)
    model = LlamaModel(embedded_model_path(), n_ctx=2048, n_seq_max=config.sequence_ids,
                       n_threads=2, unified_kv=not streams)
    engine = Engine(model, config)
    prompt = reference["items"][0]["prompt_token_ids"]
    outs = []
    done = threading.Event()

    def sink(out: StepOutput) -> None:
        outs.append(out)
        if len(outs) == 3:
            done.set()

    try:
        engine.submit(
            GenerationRequest(
                tuple(prompt), SamplingParams(temperature=0.0, max_tokens=12),
                beam=BeamSearchParams(width=4, n=3),
            ),
            sink,
        )
        assert done.wait(60)
        assert engine.stats()["running"] == 0 and engine.stats()["kv_used"] == 0
    finally:
        engine.shutdown()
    assert sorted(o.choice for o in outs) == [0, 1, 2]
    assert len({tuple(o.token_ids) for o in outs}) == 3
    scorer = LlamaModel(embedded_model_path(), n_ctx=2048, n_seq_max=1, n_threads=2)
    try:
        for out in outs:
            tokens = np.asarray(prompt + out.token_ids, dtype=np.int32)
            n = len(tokens)
            logits = scorer.decode(
                tokens, np.arange(n, dtype=np.int32), np.zeros(n, np.int32), np.ones(n, np.int8)
            )
            scorer.forget(0)
            lp = log_softmax(logits[len(prompt) - 1 :])
            expected = float(lp[np.arange(len(out.token_ids)), out.token_ids].sum())
            if out.finish_reason == "stop":  # the ending token's logprob counts too
                endings = [expected + float(lp[-1, t]) for t in model.eog_token_ids]
                expected = min(endings, key=lambda e: abs(e - out.cumulative_logprob))
            assert out.cumulative_logprob == pytest.approx(expected, abs=0.3)
    finally:
        scorer.close()


@pytest.mark.parametrize("length_penalty", [1000.0, -1000.0, 1e300, -1e300])
def test_extreme_length_penalties_rank_without_overflow(length_penalty: float) -> None:
    """``cum / length ** lp`` used to raise OverflowError or ZeroDivisionError here and end
    every sequence of the server; in log space it ranks, and scores, whatever the penalty."""
    hyps = [Hypothesis([1] * n, cum, "stop", n) for n, cum in [(1, -0.5), (3, -1.5), (7, -4.0)]]
    for h in hyps:
        assert not math.isnan(h.score(length_penalty))
    ranked = sorted(hyps, key=lambda h: h.rank(length_penalty), reverse=True)
    assert [h.length for h in ranked] == ([7, 3, 1] if length_penalty > 0 else [1, 3, 7])
    params = BeamSearchParams(width=2, n=2, length_penalty=length_penalty, early_stopping="never")
    state = BeamState(params, max_new_tokens=4, ends=frozenset({END}))
    state.start(dist({1: 0.5, 2: 0.5}))
    while not state.done:
        state.step(np.vstack([dist({END: 0.5, 3: 0.25, 4: 0.25}) for _ in state.generated]))
    assert len(state.best()) == 2


def test_rank_orders_as_the_score_does() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        a, b = (Hypothesis([], -float(rng.uniform(0, 50)), "stop", int(rng.integers(1, 60)))
                for _ in range(2))
        lp = float(rng.uniform(-3, 3))
        if a.score(lp) != b.score(lp):
            assert (a.score(lp) > b.score(lp)) == (a.rank(lp) > b.rank(lp))
    assert Hypothesis([], 0.0, "stop", 5).rank(2.0) == math.inf  # a sure thing ranks first
    assert Hypothesis([], math.nan, "stop", 5).rank(2.0) == -math.inf


def test_a_row_without_possible_tokens_proposes_no_candidate() -> None:
    state = BeamState(BeamSearchParams(width=2, n=1), max_new_tokens=5, ends=frozenset({END}))
    state.start(dist({1: 0.5, 2: 0.5}))
    healthy = state.generated[1]
    survivors = state.step(np.vstack([np.full(V, np.nan), dist({3: 1.0})]))
    assert {c.parent for c in survivors} == {1}
    assert all(g[:1] == healthy for g in state.generated)
    assert not any(math.isnan(c) for c in state.cum)
