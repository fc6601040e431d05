"""The engine on the real embedded model: fidelity, stops, cancellation, queue limits."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from switchboard.engine import (
    Engine,
    EngineConfig,
    EngineOverloaded,
    GenerationRequest,
    LlamaModel,
    PromptTooLong,
    SamplingParams,
    StepOutput,
)
from switchboard.engine.embedded import embedded_model_path


class Collector:
    def __init__(self) -> None:
        self.outputs: list[StepOutput] = []
        self.done = threading.Event()

    def __call__(self, out: StepOutput) -> None:
        self.outputs.append(out)
        if out.finished:
            self.done.set()

    @property
    def text(self) -> str:
        return "".join(o.text for o in self.outputs)

    @property
    def finish_reason(self) -> str | None:
        return self.outputs[-1].finish_reason if self.outputs else None


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    """Without prefix cache: each request runs alone in the KV cache, as llama.cpp's reference."""
    config = EngineConfig(max_sequences=4, max_queue=4, cache_slots=0)
    model = LlamaModel(embedded_model_path(), n_ctx=4096, n_seq_max=config.sequence_ids,
                       n_threads=2)
    eng = Engine(model, config)
    yield eng
    eng.shutdown()


def run(engine: Engine, tokens: list[int], **params: object) -> Collector:
    sink = Collector()
    engine.submit(GenerationRequest(tuple(tokens), SamplingParams(**params)), sink)  # type: ignore[arg-type]
    assert sink.done.wait(60)
    return sink


def test_greedy_matches_llama_cpp_reference(engine: Engine, reference: dict) -> None:
    same = 0
    for item in reference["items"]:
        out = run(engine, item["prompt_token_ids"], temperature=0.0, max_tokens=32)
        same += out.text == item["completion_text"]
        assert out.finish_reason == item["finish_reason"]
    assert same >= 9


def test_logprobs_match_reference(engine: Engine, reference: dict) -> None:
    item = reference["items"][0]
    out = run(
        engine, item["prompt_token_ids"], temperature=0.0, max_tokens=5, logprobs=True,
        top_logprobs=5,
    )
    lps = [lp for o in out.outputs for lp in o.logprobs]
    assert len(lps) == 5
    for lp, expected, top in zip(lps, item["token_logprobs"], item["top_logprobs"]):
        assert lp.logprob == pytest.approx(expected, abs=0.05)
        got = {t.text.decode("utf-8", "replace"): t.logprob for t in lp.top}
        for token, value in top.items():
            assert got[token] == pytest.approx(value, abs=0.05)


def test_max_tokens_finishes_with_length(engine: Engine, reference: dict) -> None:
    out = run(engine, reference["items"][1]["prompt_token_ids"], temperature=0.0, max_tokens=3)
    assert out.finish_reason == "length"
    assert out.outputs[-1].completion_tokens == 3


def test_stop_string_cuts_output(engine: Engine, reference: dict) -> None:
    item = reference["items"][0]  # greedy text: "L'Étoile, la Cité, ..."
    out = run(engine, item["prompt_token_ids"], temperature=0.0, max_tokens=32, stop=(", la",))
    assert out.text == "L'Étoile"
    assert out.finish_reason == "stop"


def test_seeded_sampling_is_reproducible(engine: Engine, reference: dict) -> None:
    tokens = reference["items"][3]["prompt_token_ids"]
    a = run(engine, tokens, temperature=1.0, seed=1234, max_tokens=16).text
    b = run(engine, tokens, temperature=1.0, seed=1234, max_tokens=16).text
    assert a == b


def test_cancel_frees_the_sequence(engine: Engine, reference: dict) -> None:
    kv_before = engine.stats()["kv_used"]
    sink = Collector()
    handle = engine.submit(
        GenerationRequest(
            tuple(reference["items"][1]["prompt_token_ids"]),
            SamplingParams(temperature=0.0, max_tokens=2000, ignore_eos=True),
        ),
        sink,
    )
    deadline = time.monotonic() + 30
    while not sink.outputs and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.stats()["running"] == 1
    handle.cancel()
    deadline = time.monotonic() + 5
    while engine.stats()["running"] and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = engine.stats()
    assert (stats["running"], stats["waiting"]) == (0, 0)
    assert stats["kv_used"] == kv_before  # the cancelled sequence's cells are gone
    assert not sink.done.is_set()


def test_queue_full_is_refused(engine: Engine, reference: dict) -> None:
    tokens = tuple(reference["items"][0]["prompt_token_ids"])
    params = SamplingParams(temperature=0.0, max_tokens=400, ignore_eos=True)
    handles = []
    with pytest.raises(EngineOverloaded):
        for _ in range(20):  # 4 running + 4 waiting fit; the rest must be refused
            handles.append(engine.submit(GenerationRequest(tokens, params), Collector()))
    assert 4 <= len(handles) <= 8
    for h in handles:
        h.cancel()


def test_prompt_longer_than_context_is_refused(engine: Engine) -> None:
    with pytest.raises(PromptTooLong) as refused:
        engine.submit(GenerationRequest(tuple([1] * 9000), SamplingParams()), Collector())
    assert "However, your messages resulted in 9000 tokens." in str(refused.value)


def test_completion_past_the_context_is_refused_with_both_counts(engine: Engine) -> None:
    ask = engine.context_limit  # 100 prompt tokens + this many new ones cannot fit
    with pytest.raises(PromptTooLong) as refused:
        engine.submit(
            GenerationRequest(tuple([1] * 100), SamplingParams(max_tokens=ask)), Collector()
        )
    assert str(refused.value) == (
        f"This model's maximum context length is {engine.context_limit} tokens. However, you "
        f"requested {100 + ask} tokens (100 in the messages, {ask} in the completion). "
        "Please reduce the length of the messages or completion."
    )


@pytest.mark.parametrize("streams", [False, True], ids=["unified", "streams"])
def test_prefix_cache_serves_a_repeated_prompt(streams: bool) -> None:
    config = EngineConfig(max_sequences=2, max_queue=4, cache_slots=2, kv_streams=streams)
    model = LlamaModel(embedded_model_path(), n_ctx=2048, n_seq_max=config.sequence_ids,
                       n_threads=2, unified_kv=not streams)
    eng = Engine(model, config)
    try:
        system = model.tokenize("<|im_start|>system\n" + "You answer briefly. " * 40)
        first = run(eng, system + model.tokenize("<|im_start|>user\nHi"), max_tokens=4)
        second = run(eng, system + model.tokenize("<|im_start|>user\nHello"), max_tokens=4)
        assert first.outputs[-1].cached_tokens == 0
        assert second.outputs[-1].cached_tokens >= len(system)
        # With streams the second took the first's over: they differ only in their last tokens.
        assert eng.stats()["cached"] == (1 if streams else 2)
    finally:
        eng.shutdown()
