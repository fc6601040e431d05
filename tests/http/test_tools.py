"""Function tools through the official SDK: every tool_choice, streamed deltas, history, errors."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest
from openai import OpenAI

from tests.conftest import API_KEY, RunningServer

MODEL = "smollm2-135m-instruct"
WEATHER = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                            "unit": {"enum": ["c", "f"]}},
           "required": ["city", "unit"], "additionalProperties": False}
ADD = {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 999},
                                        "b": {"type": "integer", "minimum": 0, "maximum": 999}},
       "required": ["a", "b"], "additionalProperties": False}
TOOLS: Any = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                      "parameters": WEATHER}},
    {"type": "function", "function": {"name": "add", "description": "Add two numbers",
                                      "parameters": ADD}},
]
SCHEMAS = {"get_weather": WEATHER, "add": ADD}
ASK = [{"role": "user", "content": "What's the weather in Paris?"}]


@pytest.fixture(scope="module")
def client(server: RunningServer) -> OpenAI:
    return OpenAI(base_url=server.v1 + "/", api_key=API_KEY, max_retries=0, timeout=120)


def check_calls(message: Any, names: set[str]) -> None:
    assert message.tool_calls
    for call in message.tool_calls:
        assert call.id.startswith("call_") and call.type == "function"
        assert call.function.name in names
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def test_required_forces_valid_calls(client: OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=200,
        temperature=0,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    check_calls(choice.message, {"get_weather", "add"})


def test_named_function_is_the_one_called_once(client: OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, max_tokens=120,
        tool_choice={"type": "function", "function": {"name": "add"}},
    )
    calls = reply.choices[0].message.tool_calls
    assert calls and len(calls) == 1 and calls[0].function.name == "add"
    check_calls(reply.choices[0].message, {"add"})


def test_auto_may_answer_in_text_and_none_never_calls(client: OpenAI) -> None:
    for choice in ("auto", "none"):
        reply = client.chat.completions.create(
            model=MODEL, messages=ASK, tools=TOOLS, tool_choice=choice, max_tokens=40,
            temperature=0,
        )
        message = reply.choices[0].message
        if message.tool_calls:
            assert choice == "auto"
            check_calls(message, {"get_weather", "add"})
            assert reply.choices[0].finish_reason == "tool_calls"
        else:
            assert message.content and not message.content.startswith("<tool_call>")


def test_streamed_deltas_reassembled_by_the_sdk(client: OpenAI) -> None:
    with client.chat.completions.stream(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=120,
        parallel_tool_calls=False,
    ) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_completion()
    assert "tool_calls.function.arguments.delta" in events
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls" and len(choice.message.tool_calls or []) == 1
    check_calls(choice.message, {"get_weather", "add"})


def test_history_with_calls_and_results_is_accepted(client: OpenAI) -> None:
    history: Any = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "c"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees and sunny"},
    ]
    reply = client.chat.completions.create(
        model=MODEL, messages=history, tools=TOOLS, tool_choice="none", max_tokens=30
    )
    assert reply.choices[0].message.content


@pytest.mark.parametrize(
    "kwargs,param",
    [
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
         "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [{"type": "custom", "custom": {"name": "grep"}}]}, "tools"),
        ({"tools": TOOLS, "extra_body": {"guided_regex": "a+"}}, "guided_regex"),
    ],
)
def test_tool_errors_name_the_parameter(client: OpenAI, kwargs: dict, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=5, **kwargs)
    assert err.value.body["param"] == param  # type: ignore[index]
