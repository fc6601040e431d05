"""The chat template renders the GGUF's own template byte for byte as llama.cpp saw it."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.engine import ChatTemplate, LlamaModel, TemplateRenderError
from switchboard.engine.embedded import embedded_model_path


@pytest.fixture(scope="module")
def model() -> LlamaModel:
    m = LlamaModel(embedded_model_path(), n_ctx=512, n_seq_max=1, n_threads=2)
    yield m
    m.close()


def test_gguf_carries_the_reference_template(model: LlamaModel, reference: dict) -> None:
    assert model.info.chat_template == reference["chat_template"]


def test_single_user_message_renders_byte_exact(model: LlamaModel, reference: dict) -> None:
    template = ChatTemplate(model.info.chat_template, model.info.bos_token, model.info.eos_token)
    for item in reference["items"]:
        messages = [{"role": "user", "content": item["question"]}]
        prompt = template.render(messages, add_generation_prompt=True)
        assert prompt.encode() == item["prompt"].encode()
        assert model.tokenize(prompt) == item["prompt_token_ids"]


def test_system_message_replaces_default_system_prompt(model: LlamaModel) -> None:
    template = ChatTemplate(model.info.chat_template)
    prompt = template.render(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    )
    assert prompt == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_template_is_sandboxed() -> None:
    evil = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(TemplateRenderError):
        ChatTemplate(evil).render([{"role": "user", "content": "x"}])


def test_raise_exception_in_template_is_a_render_error() -> None:
    template = ChatTemplate("{{ raise_exception('roles must alternate') }}")
    with pytest.raises(TemplateRenderError, match="roles must alternate"):
        template.render([{"role": "user", "content": "x"}])


def test_a_gguf_without_template_gets_chatml() -> None:
    prompt = ChatTemplate(None).render([{"role": "user", "content": "Hi"}])
    assert prompt == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_templates_that_read_tools_are_told_apart(reference: dict) -> None:
    data = Path(__file__).parent.parent / "data"
    assert not ChatTemplate(reference["chat_template"]).knows_tools  # SmolLM2
    assert not ChatTemplate(None).knows_tools
    for name in ("qwen2_5_chat_template.jinja", "llama3_1_chat_template.jinja"):
        assert ChatTemplate((data / name).read_text()).knows_tools
    assert not ChatTemplate("{# tools #}{{ messages[0].content }}").knows_tools  # a comment


def test_tools_reach_the_template_in_hugging_face_layout() -> None:
    data = Path(__file__).parent.parent / "data"
    template = ChatTemplate((data / "qwen2_5_chat_template.jinja").read_text())
    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    prompt = template.render([{"role": "user", "content": "1+1?"}], tools=[tool])
    assert '<tools>\n{"type": "function", "function": {"name": "add", "parameters": ' \
        '{"type": "object"}}}\n</tools>' in prompt
