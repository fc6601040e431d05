"""Fast-forward: the tokens a grammar forces after a sampled one are taken without sampling and
fed together in the next forward pass (``switchboard.engine.token_steps``).

The run with fast-forward must take fewer forward passes and emit fewer steps than without, give
output that follows the schema, and every token it sampled must be the model's own choice reading
the same tokens as a prompt (the batched forced tokens got the right positions and cells, and the
right logits row was read). The limits of a sequence still hold on forced tokens: ``max_tokens``
cuts them, a stop string inside them ends the output, and logprob requests are not fast-forwarded.
These run a sampled request whose nucleus holds only the top token (``NUCLEUS``): sampled, so its
forced tokens are taken unchecked, yet its choices are the model's own.

A greedy request drafts its forced tokens instead, where the engine can verify them exactly
(flash attention), and decodes token by token where it cannot: either way its output is the
same with fast-forward and without.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import jsonschema
import llguidance
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
from switchboard.engine.embedded import embedded_model_path
from switchboard.engine.weights import prepare_weights
from switchboard.serving.constraints import JSON_OPTIONS
from tests.data.schemas import PERSON
from tests.engine.collect import Collected

SCHEMA = PERSON
GRAMMAR = llguidance.LLMatcher.grammar_from_json_schema(SCHEMA, defaults=JSON_OPTIONS)
PROMPT = "Describe a fictional person as JSON."
PROMPTS = [PROMPT, "A person who likes boats, as JSON.", "Make up a chess player.",
           "JSON for a retired teacher from Lyon."]
NUCLEUS = {"temperature": 1.0, "top_p": 1e-9}  # sampled, but always the most likely token


@pytest.fixture(scope="module", params=["streams", "unified, flash attention"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Engine]:
    path = prepare_weights(
        embedded_model_path(), "q8_0", tmp_path_factory.mktemp("weights"), threads=2
    )
    streams = request.param.startswith("streams")
    # Without speculation, which would also put several tokens in a step (test_speculative).
    # A unified pool serves a cached prompt in other cells than a fresh read, which can tip a
    # near-tie late in a greedy output (docs: Serving, Fidelity): no cache there, so a greedy
    # output with fast-forward is compared with one without, both read fresh.
    config = EngineConfig(max_sequences=4, max_queue=64, cache_slots=4 if streams else 0,
                          kv_streams=streams, speculative=False)
    model = LlamaModel(path, n_ctx=4096, n_seq_max=config.sequence_ids, n_threads=2,
                       flash_attn="flash" in request.param, unified_kv=not streams)
    eng = Engine(model, config)
    yield eng
    eng.shutdown()


def chat_tokens(engine: Engine, text: str) -> list[int]:
    return engine.model.tokenize(
        f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
    )


def generate(engine: Engine, prompt: list[int], fast_forward: bool, accepted: list[int] = (),
             **params: object) -> list[StepOutput]:
    """Run one constrained request to its end (the grammar first follows ``accepted``)."""
    engine.fast_forward = fast_forward  # read by the engine thread at each step
    constraint = engine.grammar.matcher(GRAMMAR)
    for token in accepted:
        assert constraint.accept(token)
    sink = Collected()
    request = GenerationRequest(
        tuple(prompt), SamplingParams(**{**NUCLEUS, "max_tokens": 120, **params}),
        constraint=constraint,
    )
    engine.submit(request, sink)  # type: ignore[arg-type]
    assert sink.done.wait(120)
    assert sink.outputs[-1].error is None
    return sink.outputs


def text_of(outputs: list[StepOutput]) -> str:
    return "".join(o.text for o in outputs)


def tokens_of(outputs: list[StepOutput]) -> list[int]:
    return [t for o in outputs for t in o.token_ids]


def count_passes(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    decode = engine.model.decode
    passes = [0]

    def counting(*arrays: np.ndarray) -> np.ndarray:
        passes[0] += 1
        return decode(*arrays)

    monkeypatch.setattr(engine.model, "decode", counting)
    return passes


def test_fewer_passes_and_steps_and_the_output_follows_the_schema(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompt = chat_tokens(engine, PROMPT)
    passes = count_passes(engine, monkeypatch)
    slow = generate(engine, prompt, fast_forward=False)
    slow_passes, passes[0] = passes[0], 0
    fast = generate(engine, prompt, fast_forward=True)
    for outputs in (slow, fast):
        assert outputs[-1].finish_reason == "stop"
        jsonschema.validate(json.loads(text_of(outputs)), SCHEMA)
        assert outputs[-1].completion_tokens == len(tokens_of(outputs))
        pieces = b"".join(engine.model.piece(t) for t in tokens_of(outputs))
        assert pieces.decode() == text_of(outputs)
    assert all(len(o.token_ids) <= 1 for o in slow)
    assert max(len(o.token_ids) for o in fast) > 2  # forced tokens came with a sampled one
    assert len(fast) < len(slow)
    assert passes[0] < slow_passes


def test_each_sampled_token_is_the_models_choice_after_the_forced_ones(engine: Engine) -> None:
    """Read back as a prompt, the tokens before each sampled token (forced ones included) lead
    the model to that same token: the forced tokens were fed at the right positions."""
    prompt = chat_tokens(engine, PROMPT)
    fast = generate(engine, prompt, fast_forward=True)
    tokens = tokens_of(fast)
    at = 0
    checked = 0
    for out in fast:
        if at > 0 and out.token_ids:  # its first token was sampled, the rest forced
            again = generate(engine, prompt + tokens[:at], fast_forward=False,
                             accepted=tokens[:at], max_tokens=1)
            assert tokens_of(again)[:1] == out.token_ids[:1], f"after {at} tokens"
            checked += 1
        at += len(out.token_ids)
    assert checked >= 5


@pytest.mark.parametrize("max_tokens", [2, 3, 4, 5, 6, 7, 8])
def test_forced_tokens_count_toward_max_tokens_and_are_cut_there(
    engine: Engine, max_tokens: int
) -> None:
    outputs = generate(engine, chat_tokens(engine, PROMPT), fast_forward=True,
                       max_tokens=max_tokens)
    assert len(tokens_of(outputs)) == max_tokens
    assert outputs[-1].finish_reason == "length"
    assert outputs[-1].completion_tokens == max_tokens
    pieces = b"".join(engine.model.piece(t) for t in tokens_of(outputs))
    assert pieces.decode("utf-8", "replace") == text_of(outputs)


def test_a_stop_string_inside_forced_text_ends_the_output(engine: Engine) -> None:
    outputs = generate(engine, chat_tokens(engine, PROMPT), fast_forward=True, stop=('"city',))
    assert outputs[-1].finish_reason == "stop"
    text = text_of(outputs)
    assert '"age": ' in text and "city" not in text
    assert text.endswith(", ")


def test_requests_with_logprobs_are_not_fast_forwarded(engine: Engine) -> None:
    outputs = generate(engine, chat_tokens(engine, PROMPT), fast_forward=True,
                       logprobs=True, top_logprobs=1)
    assert all(len(o.token_ids) <= 1 for o in outputs)
    n_tokens = len(tokens_of(outputs))  # an end-of-generation token has no logprob
    assert sum(len(o.logprobs) for o in outputs) in (n_tokens, n_tokens - 1)
    jsonschema.validate(json.loads(text_of(outputs)), SCHEMA)


def test_greedy_output_is_the_same_with_and_without_fast_forward(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    passes = count_passes(engine, monkeypatch)
    greedy = {"temperature": 0.0, "top_p": 1.0}
    saved = 0
    for text in PROMPTS:
        prompt = chat_tokens(engine, text)
        passes[0] = 0
        slow = generate(engine, prompt, fast_forward=False, **greedy)
        slow_passes, passes[0] = passes[0], 0
        fast = generate(engine, prompt, fast_forward=True, **greedy)
        assert tokens_of(fast) == tokens_of(slow), text
        assert text_of(fast) == text_of(slow)
        if engine.model.flash_attn:  # the forced tokens were drafted and verified
            assert max(len(o.token_ids) for o in fast) > 2
            saved += slow_passes - passes[0]
        else:  # nothing to verify them exactly with: one token per pass
            assert all(len(o.token_ids) <= 1 for o in fast)
    assert saved > 0 if engine.model.flash_attn else saved == 0
