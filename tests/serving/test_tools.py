"""Tool-call streaming: output text split anywhere becomes OpenAI's tool-call deltas."""

from __future__ import annotations

import json

import pytest

from switchboard.serving.tools import ToolCallStream, parse_calls

OUTPUT = (
    '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris}", "unit": "c"}}</tool_call>'
    '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'
)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50, len(OUTPUT)])
def test_deltas_reassemble_to_the_calls(size: int) -> None:
    stream = ToolCallStream()
    calls: dict[int, dict] = {}
    for start in range(0, len(OUTPUT), size):
        content, deltas = stream.feed(OUTPUT[start : start + size])
        assert content == ""
        for d in deltas:
            call = calls.setdefault(d["index"], {"name": None, "arguments": "", "id": None})
            if "id" in d:
                assert call["id"] is None  # id and name come once, first
                call["id"], call["name"] = d["id"], d["function"]["name"]
            call["arguments"] += d["function"]["arguments"]
    assert [c["name"] for c in calls.values()] == ["get_weather", "add"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris}", "unit": "c"}
    assert json.loads(calls[1]["arguments"]) == {"a": 1, "b": 2}
    assert all(c["id"].startswith("call_") for c in calls.values())


def test_plain_text_streams_as_content() -> None:
    stream = ToolCallStream()
    assert stream.feed("Hello") == ("Hello", [])
    assert stream.feed(" <b>") == (" <b>", [])


def test_parse_calls_of_a_finished_output() -> None:
    calls = parse_calls(OUTPUT)
    assert [c["function"]["name"] for c in calls] == ["get_weather", "add"]
    assert json.loads(calls[1]["function"]["arguments"]) == {"a": 1, "b": 2}
    assert parse_calls("just text") == []
