"""``tokenize_prompt`` splits a prompt at its special tokens itself and must give exactly the
tokens llama.cpp's own search gives, and know a too-long prompt without tokenizing all of it."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from switchboard.engine import LlamaModel, prompt_tokens
from switchboard.engine.embedded import embedded_model_path
from switchboard.engine.prompt_tokens import PromptOverLimit, tokenize_prompt

PIECES = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "user\n", "assistant\n", " ", "\n",
          "  ", "hello", " world", "Paris", "<|im", "end|>", "<", "|", "é", "日本語", "🙂",
          "12345", "\t", "don't", " <|im_end|>", "<|im_start|>system"]


@pytest.fixture(scope="module")
def model() -> Iterator[LlamaModel]:
    m = LlamaModel(embedded_model_path(), n_ctx=512, n_seq_max=1, n_threads=2)
    yield m
    m.close()


@pytest.fixture()
def always_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """Take the split path for every text, not only for the costly ones."""
    monkeypatch.setattr(prompt_tokens, "_WHOLE_TEXT_WORK", 0)


@pytest.mark.usefixtures("always_split")
def test_split_tokens_equal_llama_cpps(model: LlamaModel) -> None:
    rng = random.Random(7)
    for _ in range(300):
        text = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 40)))
        assert tokenize_prompt(model, text) == model.tokenize(text), repr(text)


def test_many_messages_take_the_split_path_with_the_same_tokens(model: LlamaModel) -> None:
    text = "".join(f"<|im_start|>user\nmessage {i}<|im_end|>\n" for i in range(3000))
    assert tokenize_prompt(model, text) == model.tokenize(text)


@pytest.mark.usefixtures("always_split")
def test_a_limit_refuses_exactly_the_prompts_over_it(model: LlamaModel) -> None:
    text = "<|im_start|>user\n" + "the harbour master counted boats " * 40 + "<|im_end|>\n"
    n = len(model.tokenize(text))
    assert tokenize_prompt(model, text, limit=n) == model.tokenize(text)
    with pytest.raises(PromptOverLimit):
        tokenize_prompt(model, text, limit=n - 1)
    with pytest.raises(PromptOverLimit):  # known from its length alone
        tokenize_prompt(model, "x" * 1_000_000, limit=100)
