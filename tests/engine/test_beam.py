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
