"""Tools in the model's own chat template (issue 23 item 5): prompt, grammar and parsing agree.

The Qwen 2.5 and Llama 3.1 templates are the models' own (tests/data); no weights are needed to
check the prompt they render, and the grammar is checked byte by byte.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import llguidance
import pytest

from switchboard.engine import ChatTemplate
from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.serving.tool_parser import ToolCallParser
from switchboard.serving.tools import (
    HERMES_FORMAT,
    LLAMA3_FORMAT,
    SWITCHBOARD_FORMAT,
    call_format,
    plan_tools,
    render_prompt,
)

DATA = Path(__file__).parent.parent / "data"
QWEN = ChatTemplate((DATA / "qwen2_5_chat_template.jinja").read_text(), "", "<|im_end|>")
LLAMA = ChatTemplate((DATA / "llama3_1_chat_template.jinja").read_text(), "<|begin_of_text|>",
                     "<|eot_id|>")
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather",
                                           "description": "Weather in a city",
                                           "parameters": WEATHER}}]
HISTORY: list[dict[str, Any]] = [
    {"role": "user", "content": "What's the weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [{
        "id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees"},
]


def request(messages: list[dict[str, Any]], **fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": messages, "tools": TOOLS, **fields})


def matches(grammar: str, text: str) -> bool:
    tokenizer = llguidance.LLTokenizer("byte")
    matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
    return all(matcher.consume_token(b) for b in tokenizer.tokenize_bytes(text.encode())) \
        and matcher.is_accepting()


def test_each_template_gets_the_format_it_teaches(reference: dict) -> None:
    assert call_format(ChatTemplate(reference["chat_template"])) is SWITCHBOARD_FORMAT  # SmolLM2
    assert call_format(QWEN) is HERMES_FORMAT
    assert call_format(LLAMA) is LLAMA3_FORMAT
    mistral_like = "{% for m in messages %}{{ m.content }}{% endfor %}{{ tools }}[TOOL_CALLS]"
    assert call_format(ChatTemplate(mistral_like)) is SWITCHBOARD_FORMAT  # unknown layout


def test_qwen_renders_the_tools_the_calls_and_the_results_itself() -> None:
    req = request(HISTORY + [{"role": "user", "content": "And in Rome?"}])
    plan = plan_tools(req, call_format(QWEN))
    assert plan is not None
    tool = json.dumps(TOOLS[0], ensure_ascii=False)
    assert render_prompt(req, QWEN, plan) == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
        "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        f"{tool}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\nWhat's the weather in Paris?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": '
        '{"city": "Paris"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n18 degrees\n</tool_response><|im_end|>\n"
        "<|im_start|>user\nAnd in Rome?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_qwen_grammar_and_parser_follow_the_template_format() -> None:
    plan = plan_tools(request(HISTORY[:1], tool_choice="required"), HERMES_FORMAT)
    assert plan is not None
    output = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>\n'
              '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>')
    assert matches(plan.grammar, output)
    assert not matches(plan.grammar, '<tool_call>{"name": "get_weather", "arguments": '
                                     '{"city": "Rome"}}</tool_call>')  # Switchboard's layout
    parser = ToolCallParser(plan.format, plan.names)
    parser.feed(output)
    assert parser.finish("stop") == "tool_calls"
    assert [c["function"]["arguments"] for c in parser.tool_calls()] == \
        ['{"city": "Rome"}', '{"city": "Oslo"}']


def test_tool_choice_none_renders_no_tools_but_keeps_the_history() -> None:
    prompt = render_prompt(request(HISTORY, tool_choice="none"), QWEN, None)
    assert "# Tools" not in prompt
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}' in prompt


def test_llama31_gets_tools_in_the_first_user_message_and_one_json_call() -> None:
    req = request(HISTORY)
    plan = plan_tools(req, call_format(LLAMA))
    assert plan is not None
    prompt = render_prompt(req, LLAMA, plan)
    assert prompt.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                             "Environment: ipython\n")
    assert ("<|start_header_id|>user<|end_header_id|>\n\nGiven the following functions, please "
            "respond with a JSON for a function call") in prompt
    assert json.dumps(TOOLS[0], indent=4) in prompt
    assert prompt.endswith(
        "What's the weather in Paris?<|eot_id|>"
        '<|start_header_id|>assistant<|end_header_id|>\n\n{"name": "get_weather", '
        '"parameters": {"city": "Paris"}}<|eot_id|>'
        '<|start_header_id|>ipython<|end_header_id|>\n\n"18 degrees"<|eot_id|>'
        "<|start_header_id|>assistant<|end_header_id|>\n\n")
    output = '{"name": "get_weather", "parameters": {"city": "Rome"}}'
    assert matches(plan.grammar, output)
    assert not matches(plan.grammar, output + output)  # one call at a time
    parser = ToolCallParser(plan.format, plan.names)
    parser.feed(output)
    assert parser.finish("stop") == "tool_calls"
    assert parser.tool_calls()[0]["function"] == {"name": "get_weather",
                                                  "arguments": '{"city": "Rome"}'}


@pytest.mark.parametrize("template", [QWEN, LLAMA], ids=["qwen", "llama"])
def test_auto_text_cannot_start_like_a_call(template: ChatTemplate) -> None:
    plan = plan_tools(request(HISTORY[:1], tool_choice="auto"), call_format(template))
    assert plan is not None
    assert matches(plan.grammar, "It is sunny.")
    assert not matches(plan.grammar, plan.format.head("")[0] + "b")


def test_smollm2_keeps_switchboard_format_in_the_system_message(reference: dict) -> None:
    template = ChatTemplate(reference["chat_template"])
    req = request(HISTORY)
    plan = plan_tools(req, call_format(template))
    assert plan is not None
    prompt = render_prompt(req, template, plan)
    assert prompt.startswith("<|im_start|>system\nYou can call these functions:\n")
    assert ('<|im_start|>assistant\n<tool_call>{"name": "get_weather", "arguments": '
            '{"city": "Paris"}}</tool_call><|im_end|>') in prompt
    assert matches(plan.grammar, '<tool_call>{"name": "get_weather", "arguments": '
                                 '{"city": "Rome"}}</tool_call>')


def test_tool_grammar_refuses_undeclared_properties() -> None:
    """Issue 23 item 2: instructor's schemas say nothing of additionalProperties."""
    plan = plan_tools(request(HISTORY[:1], tool_choice="required"), SWITCHBOARD_FORMAT)
    assert plan is not None
    head = '<tool_call>{"name": "get_weather", "arguments": '
    assert matches(plan.grammar, head + '{"city": "Rome"}}</tool_call>')
    assert not matches(plan.grammar, head + '{"city": "Rome", "type": "string"}}</tool_call>')
