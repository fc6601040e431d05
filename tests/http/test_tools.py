"""Function tools through the official SDK: every tool_choice, streamed deltas, history, errors."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from openai import OpenAI

from switchboard.http.errors import to_api_error
from switchboard.serving.tool_parser import MalformedToolCall
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


def sse_chunks(server: RunningServer, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The raw chunks of a streamed completion (what strict clients parse)."""
    with httpx.stream("POST", server.v1 + "/chat/completions", json={**body, "stream": True},
                      headers={"Authorization": f"Bearer {API_KEY}"}, timeout=300) as response:
        assert response.status_code == 200
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    return [json.loads(line) for line in lines if line != "[DONE]"]


def reassembled(chunks: list[dict[str, Any]]) -> tuple[list[dict[str, str]], str, str]:
    """(calls, content, finish_reason) from stream chunks, checking OpenAI's delta rules: one
    entry per index per chunk, the first for a call carrying id, type and name."""
    calls: dict[int, dict[str, str]] = {}
    content, reason = "", ""
    for chunk in chunks:
        for choice in chunk["choices"]:
            delta = choice["delta"]
            content += delta.get("content") or ""
            reason = choice.get("finish_reason") or reason
            entries = delta.get("tool_calls") or []
            assert len({e["index"] for e in entries}) == len(entries), entries
            for e in entries:
                if e["index"] not in calls:
                    assert e["id"].startswith("call_") and e["type"] == "function"
                    calls[e["index"]] = {"name": e["function"]["name"], "arguments": ""}
                calls[e["index"]]["arguments"] += e["function"].get("arguments") or ""
    return [calls[i] for i in sorted(calls)], content, reason


def test_a_call_cut_by_max_tokens_is_tool_calls_streamed_and_not(server: RunningServer) -> None:
    """Issue 23 items 3 and 4: the cut reply was the raw markup as content; the first streamed
    chunk carried two entries with index 0."""
    body = {"model": MODEL, "messages": ASK, "tools": TOOLS, "tool_choice": "required",
            "max_tokens": 24, "temperature": 0}  # cut inside the arguments
    reply = httpx.post(server.v1 + "/chat/completions", json=body, timeout=300,
                       headers={"Authorization": f"Bearer {API_KEY}"}).json()
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "length" and choice["message"]["content"] is None
    calls = [c["function"] for c in choice["message"].get("tool_calls") or []]
    assert calls and "tool_call>" not in json.dumps(calls)
    streamed, content, reason = reassembled(sse_chunks(server, body))
    assert (streamed, content, reason) == (calls, "", "length")


def test_langchain_named_two_string_schema_seed_6(server: RunningServer) -> None:
    """Issue 23 item 1: with seed 6 the model wrote </tool_call> inside a string; the call was cut
    there and json.loads raised (500). Whatever it writes now is a well-formed call."""
    schema = {"properties": {"name": {"type": "string"}, "country": {"type": "string"}},
              "required": ["name", "country"], "type": "object"}
    body = {"model": MODEL, "seed": 6, "max_tokens": 40,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "tools": [{"type": "function", "function": {"name": "Capital", "description": "",
                                                        "parameters": schema}}],
            "tool_choice": {"type": "function", "function": {"name": "Capital"}}}
    response = httpx.post(server.v1 + "/chat/completions", json=body, timeout=300,
                          headers={"Authorization": f"Bearer {API_KEY}"})
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    calls = [c["function"] for c in choice["message"].get("tool_calls") or []]
    if choice["finish_reason"] == "tool_calls":
        jsonschema.validate(json.loads(calls[0]["arguments"]), schema)
        assert set(json.loads(calls[0]["arguments"])) == {"name", "country"}
    streamed, _, reason = reassembled(sse_chunks(server, body))
    assert (streamed, reason) == (calls, choice["finish_reason"])


def test_output_outside_the_call_format_is_a_502_naming_it() -> None:
    error = to_api_error(MalformedToolCall("a call to an unknown function 'rm'"))
    assert error.status == 502 and error.body()["error"]["code"] == "invalid_tool_call"
