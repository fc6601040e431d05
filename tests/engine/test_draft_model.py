"""Speculative decoding with a draft model (``switchboard.engine.draft_model``): the shipped
Q4_1 file guesses for its Q8_0 conversion. Greedy output must be token for token the one without
speculation, on llama.cpp's reference prompts and on several requests at once, with drafts
accepted in fewer forward passes of the served model; a draft model of another vocabulary is
refused."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from switchboard.engine import Engine, EngineConfig, LlamaModel
from switchboard.engine.draft_model import DraftModel, DraftVocabularyMismatch
from switchboard.engine.embedded import embedded_model_path
from switchboard.engine.weights import prepare_weights
from tests.engine.collect import count_passes
from tests.engine.test_speculative import chat, generate, submit, tokens


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    source = embedded_model_path()
    path = prepare_weights(source, "q8_0", tmp_path_factory.mktemp("weights"), threads=2)
    config = EngineConfig(max_sequences=4, max_queue=64, cache_slots=0, kv_streams=True)
    model = LlamaModel(path, n_ctx=4096, n_seq_max=config.sequence_ids, n_threads=2,
                       flash_attn=True, unified_kv=False)
    draft = LlamaModel(source, n_ctx=4096, n_seq_max=config.sequence_ids, n_threads=2,
                       flash_attn=True, unified_kv=True)
    eng = Engine(model, config, draft)
    eng.passes = count_passes(model)  # type: ignore[attr-defined]
    yield eng
    eng.shutdown()


def test_greedy_output_is_the_served_models_in_fewer_passes(engine: Engine,
                                                           reference: dict) -> None:
    drafted = accepted = saved = 0
    for item in reference["items"][:6]:
        prompt = item["prompt_token_ids"]
        plain, plain_passes = generate(engine, prompt, False, temperature=0.0, max_tokens=40)
        fast, fast_passes = generate(engine, prompt, True, temperature=0.0, max_tokens=40)
        assert tokens(fast) == tokens(plain)
        assert fast[-1].finish_reason == plain[-1].finish_reason
        metrics = fast[-1].metrics
        assert metrics is not None
        drafted += metrics.spec_drafted_tokens
        accepted += metrics.spec_accepted_tokens
        saved += plain_passes - fast_passes
    # The same weights in another format guess free text, which prompt lookup cannot.
    assert accepted > drafted / 2 > 0
    assert saved > 0


def test_requests_at_once_each_get_their_solo_output(engine: Engine) -> None:
    prompts = [chat(engine, text) for text in ("Name three rivers.", "Count to ten in French.",
                                               "What is a haiku?")]
    engine.speculative = False
    solo = []
    for prompt in prompts:
        outputs, done = submit(engine, prompt, temperature=0.0, max_tokens=32)
        assert done.wait(120)
        solo.append(tokens(outputs))
    engine.speculative = True
    runs = [submit(engine, prompt, temperature=0.0, max_tokens=32) for prompt in prompts]
    for (outputs, done), expected in zip(runs, solo):
        assert done.wait(120)
        assert outputs[-1].error is None
        assert tokens(outputs) == expected


def test_a_draft_model_of_another_vocabulary_is_refused(engine: Engine,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    draft = engine.draft_model
    assert draft is not None
    monkeypatch.setattr(draft.model, "n_vocab", draft.model.n_vocab - 1)
    with pytest.raises(DraftVocabularyMismatch):
        DraftModel(draft.model, engine.model)

