"""Speculative decoding with prompt-lookup drafts (``switchboard.engine.speculative``).

Greedy output must be token for token the same with and without speculation (on llama.cpp's
reference prompts, on a prompt that quotes its context, with logprobs, stop strings,
``max_tokens``, a grammar and concurrent requests), while the quoting prompt has drafts accepted
and takes fewer forward passes; the rejected draft tokens' KV cells must be gone when a sequence
ends. Sampled requests, and contexts without flash attention, never speculate.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import llama_cpp
import llguidance
import pytest

from switchboard.engine import (
    Engine,
    EngineConfig,
    GenerationRequest,
    LlamaModel,
    SamplingParams,
    StepOutput,
)
from switchboard.engine.embedded import embedded_model_path
from switchboard.engine.speculative import propose
from switchboard.engine.weights import prepare_weights
from switchboard.serving.constraints import JSON_OPTIONS
from tests.data.schemas import PERSON as PERSON_SCHEMA
from tests.engine.collect import Collected, count_passes

DOCUMENT = (
    "The harbour office opens at seven. Ships must report their cargo before noon, and every "
    "captain signs the ledger kept by the harbour master, Mrs. Ellen Varga. Fishing boats are "
    "exempt on Sundays. The lighthouse keeper, Tomas Reyes, rings the bell twice at dusk."
)
QUOTE = f"{DOCUMENT}\n\nQuote the document above word for word."
PERSON = ('{"name": "Ellen Varga", "age": 54, "city": "Tokyo", '
          '"languages": ["English", "Hungarian"]}')
SCHEMA = PERSON_SCHEMA


def test_propose_continues_the_longest_most_recent_match() -> None:
    tokens = [1, 2, 3, 9, 7, 2, 3, 8, 5, 1, 2, 3]
    # [1, 2, 3] recurs at the start (followed by 9); [2, 3] alone more recently (followed by 8)
    assert propose(tokens, 3) == [9, 7, 2]
    assert propose([5, 2, 3, 8, 6, 2, 3, 4, 4, 2, 3], 2) == [4, 4]  # the latest [2, 3] wins
    assert propose([1, 2, 3, 4], 4) == []  # nothing recurs
    assert propose([7, 1, 2, 7], 4) == []  # one token is not enough (NGRAM_MIN)
    assert propose(tokens, 0) == []


@pytest.fixture(scope="module", params=["streams", "unified"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Engine]:
    path = prepare_weights(
        embedded_model_path(), "q8_0", tmp_path_factory.mktemp("weights"), threads=2
    )
    streams = request.param == "streams"
    # No prefix cache: a prompt read from the cache gets slightly other numbers than one read
    # whole, which would blur the comparison (the cache has a test of its own below).
    config = EngineConfig(max_sequences=4, max_queue=64, cache_slots=0, kv_streams=streams)
    model = LlamaModel(path, n_ctx=4096, n_seq_max=config.sequence_ids, n_threads=2,
                       flash_attn=True, unified_kv=not streams)
    eng = Engine(model, config)
    eng.passes = count_passes(model)  # type: ignore[attr-defined]
    yield eng
    eng.shutdown()


def chat(engine: Engine, text: str) -> list[int]:
    return engine.model.tokenize(
        f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
    )


def submit(engine: Engine, prompt: list[int], constraint: object = None,
           **params: object) -> tuple[list[StepOutput], threading.Event]:
    sink = Collected()
    request = GenerationRequest(tuple(prompt), SamplingParams(**params),  # type: ignore[arg-type]
                                constraint=constraint)  # type: ignore[arg-type]
    engine.submit(request, sink)
    return sink.outputs, sink.done


def generate(engine: Engine, prompt: list[int], speculative: bool, constraint: object = None,
             **params: object) -> tuple[list[StepOutput], int]:
    """One request run to its end; its outputs and the forward passes it took."""
    engine.speculative = speculative  # read by the engine thread at each step
    before = engine.passes[0]  # type: ignore[attr-defined]
    outputs, done = submit(engine, prompt, constraint, **params)
    assert done.wait(120)
    assert outputs[-1].error is None
    return outputs, engine.passes[0] - before  # type: ignore[attr-defined]


def tokens(outputs: list[StepOutput]) -> list[int]:
    return [t for out in outputs for t in out.token_ids]


def text(outputs: list[StepOutput]) -> str:
    return "".join(out.text for out in outputs)


def test_greedy_output_is_the_same_on_the_reference_prompts(engine: Engine,
                                                            reference: dict) -> None:
    drafted = 0
    for item in reference["items"]:
        plain, _ = generate(engine, item["prompt_token_ids"], False, temperature=0.0,
                            max_tokens=48)
        fast, _ = generate(engine, item["prompt_token_ids"], True, temperature=0.0,
                           max_tokens=48)
        assert tokens(fast) == tokens(plain)
        assert text(fast) == text(plain)
        assert fast[-1].finish_reason == plain[-1].finish_reason
        drafted += fast[-1].metrics.spec_drafted_tokens  # type: ignore[union-attr]
    assert drafted > 0  # the comparison did speculate


def test_quoting_accepts_drafts_in_fewer_passes(engine: Engine) -> None:
    prompt = chat(engine, QUOTE)
    plain, plain_passes = generate(engine, prompt, False, temperature=0.0, max_tokens=64)
    fast, fast_passes = generate(engine, prompt, True, temperature=0.0, max_tokens=64)
    assert tokens(fast) == tokens(plain)
    metrics = fast[-1].metrics
    assert metrics is not None and plain[-1].metrics is not None
    assert metrics.spec_accepted_tokens > 0
    assert metrics.spec_accepted_tokens <= metrics.spec_drafted_tokens
    assert plain[-1].metrics.spec_drafted_tokens == 0
    assert fast_passes < plain_passes
    assert len(fast) < len(plain)  # outputs carry several tokens


def test_rejected_draft_cells_are_dropped(engine: Engine) -> None:
    """After every step, each running sequence's cells end where its accepted tokens end."""
    memory = engine.model._memory
    mismatches: list[tuple[int, int]] = []
    checked = [0]
    outputs: list[StepOutput] = []
    done = threading.Event()

    def sink(out: StepOutput) -> None:  # called on the engine thread, between passes
        for seq in engine.scheduler.running:
            held = llama_cpp.llama_memory_seq_pos_max(memory, seq.seq_id) + 1
            if held != seq.n_past:
                mismatches.append((held, seq.n_past))
            checked[0] += 1
        outputs.append(out)
        if out.finished:
            done.set()

    engine.speculative = True
    params = SamplingParams(temperature=0.0, max_tokens=48)
    drafted = accepted = 0
    for task in ("Then add a title.", "Summarize it, then list the people it names."):
        done.clear()
        engine.submit(GenerationRequest(tuple(chat(engine, f"{DOCUMENT}\n\n{task}")), params),
                      sink)
        assert done.wait(120)
        metrics = outputs[-1].metrics
        assert metrics is not None
        drafted += metrics.spec_drafted_tokens
        accepted += metrics.spec_accepted_tokens
    assert drafted > accepted > 0  # some drafts were rejected
    assert checked[0] > 0 and mismatches == []


def test_prefix_cache_keeps_only_accepted_tokens(tmp_path_factory: pytest.TempPathFactory
                                                  ) -> None:
    path = prepare_weights(
        embedded_model_path(), "q8_0", tmp_path_factory.mktemp("weights"), threads=2
    )
    config = EngineConfig(max_sequences=2, max_queue=8, cache_slots=2, kv_streams=True)
    model = LlamaModel(path, n_ctx=4096, n_seq_max=config.sequence_ids, n_threads=2,
                       flash_attn=True, unified_kv=False)
    eng = Engine(model, config)
    try:
        first, done = submit(eng, chat(eng, QUOTE), temperature=0.0, max_tokens=40)
        assert done.wait(120)
        assert first[-1].metrics.spec_accepted_tokens > 0  # type: ignore[union-attr]
        (cached,) = eng.scheduler.cached.values()
        held = llama_cpp.llama_memory_seq_pos_max(model._memory, cached.seq_id) + 1
        assert held == cached.n_past <= len(cached.tokens)
        follow = [*cached.tokens, *model.tokenize(
            "<|im_end|>\n<|im_start|>user\nAnd once more.<|im_end|>\n<|im_start|>assistant\n",
            add_special=False)]
        second, done = submit(eng, follow, temperature=0.0, max_tokens=24)
        assert done.wait(120)
        assert second[-1].error is None
        assert second[-1].cached_tokens == cached.n_past
    finally:
        eng.shutdown()


def test_logprobs_stop_strings_and_max_tokens_hold(engine: Engine) -> None:
    prompt = chat(engine, QUOTE)
    cases: list[dict[str, object]] = [
        {"logprobs": True, "top_logprobs": 3, "max_tokens": 40},
        {"stop": ("Varga",), "max_tokens": 64},
        {"max_tokens": 11},
        {"repetition_penalty": 1.05, "max_tokens": 40},
    ]
    for params in cases:
        plain, _ = generate(engine, prompt, False, temperature=0.0, **params)
        fast, _ = generate(engine, prompt, True, temperature=0.0, **params)
        assert tokens(fast) == tokens(plain), params
        assert text(fast) == text(plain), params
        assert fast[-1].finish_reason == plain[-1].finish_reason, params
        if "repetition_penalty" not in params:  # the penalty keeps the model from quoting
            assert fast[-1].metrics.spec_accepted_tokens > 0, params  # type: ignore[union-attr]
        # Alternatives are compared by value: tied ones may come in either order.
        got = [(lp.token_id, lp.logprob, [t.logprob for t in lp.top])
               for out in fast for lp in out.logprobs]
        want = [(lp.token_id, lp.logprob, [t.logprob for t in lp.top])
                for out in plain for lp in out.logprobs]
        assert len(got) == len(want)
        for (g_id, g_lp, g_top), (w_id, w_lp, w_top) in zip(got, want):
            assert g_id == w_id
            assert [g_lp, *g_top] == pytest.approx([w_lp, *w_top], abs=1e-4)
    assert len(tokens(generate(engine, prompt, True, temperature=0.0, max_tokens=11)[0])) == 11
    stopped, _ = generate(engine, prompt, True, temperature=0.0, stop=("Varga",), max_tokens=64)
    assert stopped[-1].finish_reason == "stop" and "Varga" not in text(stopped)


def test_constrained_output_is_the_same(engine: Engine) -> None:
    grammar = llguidance.LLMatcher.grammar_from_json_schema(SCHEMA, defaults=JSON_OPTIONS)
    prompt = chat(engine, f"Repeat this JSON object with age 55: {PERSON}")
    runs = {}
    for speculative in (False, True):
        runs[speculative], _ = generate(engine, prompt, speculative,
                                        engine.grammar.matcher(grammar), temperature=0.0,
                                        max_tokens=80)
    assert tokens(runs[True]) == tokens(runs[False])
    assert runs[True][-1].metrics.spec_accepted_tokens > 0  # type: ignore[union-attr]


def test_concurrent_requests_match_their_solo_runs(engine: Engine) -> None:
    """With a KV stream per sequence, speculating next to another request changes nothing.
    In a unified pool the cells two sequences share are laid out by arrival, so a loaded
    machine's timing can change the reduction order and a near-tie's greedy pick (seen once in
    CI): there the claim is per request, not across batch compositions (docs/serving.md)."""
    if not engine.config.kv_streams:
        pytest.skip("unified pool: outputs depend on the batch's cell layout (see docstring)")
    prompts = [chat(engine, QUOTE), chat(engine, f"Copy this JSON: {PERSON}")]
    solo = [tokens(generate(engine, p, False, temperature=0.0, max_tokens=40)[0])
            for p in prompts]
    engine.speculative = True
    runs = [submit(engine, p, temperature=0.0, max_tokens=40) for p in prompts]
    for (outputs, done), want in zip(runs, solo):
        assert done.wait(120)
        assert tokens(outputs) == want


def test_sampled_requests_never_speculate(engine: Engine) -> None:
    prompt = chat(engine, QUOTE)
    for seed in range(3):
        outputs, _ = generate(engine, prompt, True, temperature=0.7, seed=seed, max_tokens=24)
        assert outputs[-1].metrics.spec_drafted_tokens == 0  # type: ignore[union-attr]
    greedy, _ = generate(engine, prompt, True, top_k=1, temperature=0.9, max_tokens=24)
    assert greedy[-1].metrics.spec_drafted_tokens > 0  # type: ignore[union-attr]


def test_no_speculation_without_flash_attention() -> None:
    config = EngineConfig(max_sequences=2, max_queue=4, cache_slots=0, kv_streams=True)
    model = LlamaModel(embedded_model_path(), n_ctx=2048, n_seq_max=config.sequence_ids,
                       n_threads=2, flash_attn=False, unified_kv=False)
    eng = Engine(model, config)
    try:
        outputs, done = submit(eng, chat(eng, QUOTE), temperature=0.0, max_tokens=24)
        assert done.wait(120)
        assert outputs[-1].metrics.spec_drafted_tokens == 0  # type: ignore[union-attr]
    finally:
        eng.shutdown()
