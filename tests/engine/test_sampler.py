"""Sampler properties on synthetic logits."""

from __future__ import annotations

import numpy as np
import pytest

from switchboard.engine.request import SamplingParams
from switchboard.engine.sampler import (
    NonFiniteScores,
    Sampler,
    SequenceSampling,
    make_rng,
    top_logprobs,
)

V = 50


def seq(seed: int | None = 0, offset: int = 0, **params: object) -> SequenceSampling:
    p = SamplingParams(seed=seed, **params)  # type: ignore[arg-type]
    return SequenceSampling(params=p, rng=make_rng(seed, offset), n_vocab=V)


def logits(rows: int = 1, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, V)).astype(np.float32)


def test_temperature_zero_is_argmax() -> None:
    sampler = Sampler(V, eog_token_ids=[])
    x = logits(3)
    out = sampler.sample(x.copy(), [seq(temperature=0.0) for _ in range(3)])
    assert out.tolist() == x.argmax(axis=1).tolist()


def test_top_k_only_draws_from_the_k_best() -> None:
    sampler = Sampler(V, eog_token_ids=[])
    x = logits()
    best3 = set(np.argsort(-x[0])[:3].tolist())
    s = seq(seed=7, temperature=2.0, top_k=3)
    drawn = {int(sampler.sample(x.copy(), [s])[0]) for _ in range(200)}
    assert drawn <= best3 and len(drawn) > 1


def test_top_p_keeps_the_smallest_set_holding_p() -> None:
    sampler = Sampler(V, eog_token_ids=[])
    x = np.full((1, V), -10.0, dtype=np.float32)
    x[0, [4, 9, 13]] = [3.0, 2.5, 0.0]  # probabilities ~ .61, .37, .02
    s = seq(seed=3, top_p=0.9)
    drawn = {int(sampler.sample(x.copy(), [s])[0]) for _ in range(300)}
    assert drawn == {4, 9}


def test_min_p_drops_unlikely_tokens() -> None:
    sampler = Sampler(V, eog_token_ids=[])
    x = np.full((1, V), -10.0, dtype=np.float32)
    x[0, [1, 2]] = [5.0, 4.0]
    s = seq(seed=5, min_p=0.2)
    drawn = {int(sampler.sample(x.copy(), [s])[0]) for _ in range(300)}
    assert drawn == {1, 2}


def reference_distribution(row: np.ndarray, p: SamplingParams) -> np.ndarray:
    """The filtered distribution computed over the whole vocabulary, rule by rule."""
    scaled = row.astype(np.float64) / p.temperature
    if p.top_k:
        scaled[scaled < np.sort(scaled)[-p.top_k]] = -np.inf
    probs = np.exp(scaled - scaled.max())
    probs[probs < p.min_p * probs.max()] = 0.0
    if p.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        cut = int(np.searchsorted(cumulative, p.top_p * cumulative[-1])) + 1
        probs[order[cut:]] = 0.0
    return probs / probs.sum()


@pytest.mark.parametrize("params", [
    {"temperature": 0.8, "top_p": 0.95, "top_k": 40, "min_p": 0.05},  # llama.cpp's defaults
    {"temperature": 1.3, "top_k": 7},
    {"temperature": 0.6, "min_p": 0.1},
    {"temperature": 1.0, "top_k": 12, "top_p": 0.7},
])
def test_narrowed_draws_follow_the_whole_vocabulary_rules(params: dict[str, float]) -> None:
    """Top-k and min-p draw among their survivors only: the frequencies over 20,000 draws
    match the distribution the rules give over the whole vocabulary (total variation)."""
    sampler = Sampler(V, eog_token_ids=[])
    x = logits(seed=11) * 2.0
    s = seq(seed=21, **params)
    expected = reference_distribution(x[0], s.params)
    draws = np.array([sampler.sample(x.copy(), [s])[0] for _ in range(20_000)])
    observed = np.bincount(draws, minlength=V) / len(draws)
    assert set(np.flatnonzero(observed)) <= set(np.flatnonzero(expected))
    assert 0.5 * np.abs(observed - expected).sum() < 0.02


def test_logit_bias_forces_and_bans_tokens() -> None:
    sampler = Sampler(V, eog_token_ids=[])
    x = logits()
    worst = int(x[0].argmin())
    assert sampler.sample(x.copy(), [seq(temperature=0.0, logit_bias={worst: 100.0})])[0] == worst
    best = int(x[0].argmax())
    banned = sampler.sample(x.copy(), [seq(temperature=0.0, logit_bias={best: -100.0})])[0]
    assert banned != best


def test_same_seed_same_tokens_whatever_the_batch() -> None:
    sampler = Sampler(V, eog_token_ids=[])
    x = logits(4, seed=9)
    alone = sampler.sample(x[:1].copy(), [seq(seed=42)])[0]
    batched = sampler.sample(x.copy(), [seq(seed=42), *(seq(seed=None) for _ in range(3))])[0]
    assert batched == alone
    a, b = seq(seed=42), seq(seed=42)
    draws_a = [int(sampler.sample(x[:1].copy(), [a])[0]) for _ in range(20)]
    draws_b = [int(sampler.sample(x[:1].copy(), [b])[0]) for _ in range(20)]
    assert draws_a == draws_b and len(set(draws_a)) > 1


def test_choice_offsets_give_different_streams() -> None:
    a, b = make_rng(1, 0), make_rng(1, 1)
    assert a.random() != b.random()


def test_eog_masked_while_ignore_eos_or_before_min_tokens() -> None:
    sampler = Sampler(V, eog_token_ids=[7])
    x = np.zeros((1, V), dtype=np.float32)
    x[0, 7] = 50.0
    assert sampler.sample(x.copy(), [seq(temperature=0.0, ignore_eos=True)])[0] != 7
    s = seq(temperature=0.0, min_tokens=2)
    assert sampler.sample(x.copy(), [s])[0] != 7
    s.accept(3)
    s.accept(3)
    assert sampler.sample(x.copy(), [s])[0] == 7


def test_presence_and_repetition_penalties_lower_seen_tokens() -> None:
    sampler = Sampler(V, eog_token_ids=[])
    x = np.zeros((1, V), dtype=np.float32)
    x[0, 3] = 1.0
    x[0, 4] = 0.9
    s = seq(temperature=0.0, presence_penalty=0.5)
    s.accept(3)
    assert sampler.sample(x.copy(), [s])[0] == 4
    r = SequenceSampling(
        params=SamplingParams(temperature=0.0, repetition_penalty=1.5),
        rng=make_rng(0, 0),
        n_vocab=V,
        prompt_tokens=(3,),
    )
    assert sampler.sample(x.copy(), [r])[0] == 4


def test_top_logprobs_sorted_best_first() -> None:
    row = np.log(np.array([0.1, 0.5, 0.15, 0.25]))
    ids, values = top_logprobs(row, 3)
    assert ids.tolist() == [1, 3, 2]
    assert np.all(np.diff(values) <= 0)


def test_a_row_that_is_not_numbers_raises_instead_of_drawing() -> None:
    """NaN or +inf scores raise (the engine then samples row by row to end only that sequence)
    rather than yield an arbitrary token; -inf (a banned token) is an ordinary score."""
    sampler = Sampler(V, eog_token_ids=[])
    for bad in (np.nan, np.inf):
        for params in ({"temperature": 0.0}, {"temperature": 1.0}, {"temperature": 1.0,
                                                                     "top_p": 0.5}):
            x = logits(2)
            x[1, 7] = bad
            with pytest.raises(NonFiniteScores):
                sampler.sample(x, [seq(**params), seq(**params)])
    x = logits(1)
    x[0, :10] = -np.inf
    assert sampler.sample(x, [seq(temperature=1.0)])[0] >= 10


def test_a_tiny_temperature_is_greedy_not_an_overflow() -> None:
    sampler = Sampler(V, eog_token_ids=[])
    x = logits(2)
    out = sampler.sample(x.copy(), [seq(temperature=1e-300), seq(temperature=1e-6)])
    assert out.tolist() == x.argmax(axis=1).tolist()


def test_negative_or_out_of_vocabulary_ids_touch_no_token() -> None:
    """Bias and stop ids outside [0, V) never wrap around to the last tokens."""
    sampler = Sampler(V, eog_token_ids=[])
    x = np.zeros((1, V), dtype=np.float32)
    s = seq(logit_bias={-1: 100.0, V: 100.0}, stop_token_ids=(-1, V), min_tokens=5)
    sampler.process(x[0], s)
    assert not x.any()


def test_top_logprobs_past_the_vocabulary_returns_them_all() -> None:
    ids, values = top_logprobs(np.log(np.full(V, 1.0 / V)), V + 100)
    assert len(ids) == len(values) == V
