"""Prompt logprobs on the real embedded model: each prompt token scored in its context equals the
logprob the engine reported when it generated that token; a prompt read with ``max_tokens`` 0
samples nothing; a sequence that scores its prompt borrows no cached prefix."""

from __future__ import annotations

import threading
from collections.abc import Iterator

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
from switchboard.engine.embedded import embedded_model_path

PROMPT = "The quick brown fox jumps over the lazy dog. Once upon a time,"


class Collector:
    def __init__(self) -> None:
        self.outputs: list[StepOutput] = []
        self.done = threading.Event()

    def __call__(self, out: StepOutput) -> None:
        self.outputs.append(out)
        if out.finished:
            self.done.set()


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    """A KV stream per sequence, a prefix cache, and flash attention (with which llama.cpp gives
    a token the same numbers read alone or in a batch)."""
    config = EngineConfig(max_sequences=4, max_queue=8, cache_slots=4, kv_streams=True)
    model = LlamaModel(embedded_model_path(), n_ctx=4096, n_seq_max=config.sequence_ids,
                       n_threads=2, unified_kv=False, flash_attn=True)
    eng = Engine(model, config)
    yield eng
    eng.shutdown()


def run(engine: Engine, tokens: list[int], **params: object) -> Collector:
    sink = Collector()
    engine.submit(GenerationRequest(tuple(tokens), SamplingParams(**params)), sink)  # type: ignore[arg-type]
    assert sink.done.wait(120)
    return sink


def test_prompt_logprobs_equal_the_logprobs_of_generation(engine: Engine) -> None:
    prompt = engine.model.tokenize(PROMPT)
    generated = run(engine, prompt, temperature=0, max_tokens=16, logprobs=True, top_logprobs=3)
    sampled = [lp for out in generated.outputs for lp in out.logprobs]
    assert len(sampled) == 16
    scored = run(engine, prompt + [lp.token_id for lp in sampled], max_tokens=0,
                 prompt_logprobs=3)
    entries = scored.outputs[0].prompt_logprobs
    assert entries is not None and len(entries) == len(prompt) + 16 - 1
    assert [e.token_id for e in entries[: len(prompt) - 1]] == prompt[1:]
    for entry, reference in zip(entries[len(prompt) - 1 :], sampled, strict=True):
        assert entry.token_id == reference.token_id
        assert entry.logprob == pytest.approx(reference.logprob, abs=1e-4)
        assert [t.token_id for t in entry.top] == [t.token_id for t in reference.top]
        # greedy: the generated token was the most likely one
        assert entry.top[0].token_id == entry.token_id
        assert entry.top[0].logprob == pytest.approx(entry.logprob)
    assert all(e.logprob <= 0.0 and len(e.top) == 3 for e in entries)


def test_max_tokens_zero_reads_the_prompt_and_samples_nothing(engine: Engine) -> None:
    prompt = engine.model.tokenize("Paris is the capital of")
    first = run(engine, prompt, max_tokens=0, prompt_logprobs=0)
    assert len(first.outputs) == 1
    out = first.outputs[0]
    assert out.finish_reason == "length" and out.text == "" and out.token_ids == []
    assert out.completion_tokens == 0 and out.prompt_tokens == len(prompt)
    assert out.prompt_logprobs is not None and len(out.prompt_logprobs) == len(prompt) - 1
    assert all(e.top == () for e in out.prompt_logprobs)
    # the same prompt again: its cells are cached, but it reads and scores every position itself
    again = run(engine, prompt, max_tokens=0, prompt_logprobs=0).outputs[0]
    assert again.cached_tokens == 0
    assert again.prompt_logprobs == out.prompt_logprobs


def test_sequences_that_do_not_ask_get_no_prompt_logprobs(engine: Engine) -> None:
    prompt = engine.model.tokenize(PROMPT)
    plain = run(engine, prompt, temperature=0, max_tokens=2)
    assert all(out.prompt_logprobs is None for out in plain.outputs)
    scored = run(engine, prompt, temperature=0, max_tokens=2, prompt_logprobs=1)
    assert scored.outputs[0].prompt_logprobs is not None
    assert all(out.prompt_logprobs is None for out in scored.outputs[1:])
    assert "".join(o.text for o in scored.outputs) == "".join(o.text for o in plain.outputs)


def test_beam_search_cannot_score_a_prompt(engine: Engine) -> None:
    request = GenerationRequest((1, 2, 3), SamplingParams(temperature=0, prompt_logprobs=1),
                                beam=BeamSearchParams(width=2, n=1))
    with pytest.raises(EngineError, match="prompt_logprobs"):
        engine.submit(request, Collector())
