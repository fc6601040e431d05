"""Tool calls read back out of output text, streamed or whole, in every call format."""

from __future__ import annotations

import json
from typing import Any

import pytest

from switchboard.serving.tool_parser import MalformedToolCall, ToolCallParser
from switchboard.serving.tools import (
    HERMES_FORMAT,
    LLAMA3_FORMAT,
    SWITCHBOARD_FORMAT,
    CallFormat,
)

NAMES = ["get_weather", "add", "Capital"]


def parser(fmt: CallFormat = SWITCHBOARD_FORMAT) -> ToolCallParser:
    return ToolCallParser(fmt, NAMES)


def streamed(text: str, size: int, reason: str = "stop",
             fmt: CallFormat = SWITCHBOARD_FORMAT) -> tuple[dict[int, dict[str, Any]], str]:
    """The calls a client reassembles from the deltas of ``text`` fed ``size`` characters at a
    time, and the final finish_reason; checks OpenAI's delta rules on the way."""
    stream = parser(fmt)
    calls: dict[int, dict[str, Any]] = {}
    for start in range(0, len(text), size):
        content, deltas = stream.feed(text[start : start + size])
        assert content == ""
        indexes = [d["index"] for d in deltas]
        assert len(indexes) == len(set(indexes))  # one entry per index per chunk
        for d in deltas:
            if d["index"] not in calls:  # the first entry names the call
                assert d["id"].startswith("call_") and d["type"] == "function"
                calls[d["index"]] = {"id": d["id"], "name": d["function"]["name"],
                                     "arguments": ""}
            else:
                assert "id" not in d and "name" not in d["function"]
            calls[d["index"]]["arguments"] += d["function"]["arguments"]
    return calls, stream.finish(reason)


def whole(text: str, reason: str = "stop",
          fmt: CallFormat = SWITCHBOARD_FORMAT) -> tuple[list[dict[str, Any]], str]:
    stream = parser(fmt)
    assert stream.feed(text)[0] == ""
    reason = stream.finish(reason)
    return stream.tool_calls(), reason

OUTPUT = (
    '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris}", "unit": "c"}}</tool_call>'
    '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'
)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50, len(OUTPUT)])
def test_deltas_reassemble_to_the_calls(size: int) -> None:
    calls, reason = streamed(OUTPUT, size)
    assert reason == "tool_calls"
    assert [c["name"] for c in calls.values()] == ["get_weather", "add"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris}", "unit": "c"}
    assert json.loads(calls[1]["arguments"]) == {"a": 1, "b": 2}


def test_the_first_chunk_of_a_call_is_one_entry_with_id_name_and_arguments() -> None:
    """Issue 23 item 4: the head and the first arguments in one chunk were two index-0 entries."""
    _, deltas = parser().feed('<tool_call>{"name": "add", "arguments": {"a": 1')
    assert len(deltas) == 1
    assert deltas[0]["index"] == 0 and deltas[0]["type"] == "function"
    assert deltas[0]["function"] == {"name": "add", "arguments": '{"a": 1'}


# Issue 23 item 1 (LangChain's with_structured_output, seed 6): the grammar allows the closing
# tag inside a string; the call was cut there and json.loads raised (500).
TAG_IN_STRING = ('<tool_call>{"name": "Capital", "arguments": {"name": "Paris", "country": '
                 '"France}}</tool_call></code><br"}}</tool_call>')
TAG_IN_STRING_ARGS = '{"name": "Paris", "country": "France}}</tool_call></code><br"}'


@pytest.mark.parametrize("size", [1, 4, 13, len(TAG_IN_STRING)])
def test_a_closing_tag_inside_a_string_stays_in_the_arguments(size: int) -> None:
    calls, reason = streamed(TAG_IN_STRING, size)
    assert reason == "tool_calls" and calls[0]["arguments"] == TAG_IN_STRING_ARGS
    done, reason = whole(TAG_IN_STRING)
    assert reason == "tool_calls"
    assert [c["function"] for c in done] == [{"name": "Capital", "arguments": TAG_IN_STRING_ARGS}]
    assert json.loads(done[0]["function"]["arguments"])["country"] == \
        "France}}</tool_call></code><br"


@pytest.mark.parametrize("text", [
    '<tool_call>{"name": "add", "arguments": ',
    '<tool_call>{"name": "add", "arguments": {"a": 1, "b": ',
    OUTPUT[:60],  # inside a string
    OUTPUT[:-5],  # in the second call's closing tag
])
def test_a_call_cut_by_max_tokens_keeps_its_arguments_streamed_and_whole(text: str) -> None:
    """Issue 23 item 3: cut short, the whole reply was the raw markup as content."""
    calls, reason = streamed(text, 3, "length")
    done, whole_reason = whole(text, "length")
    assert reason == whole_reason == "length"
    assert [{"name": c["name"], "arguments": c["arguments"]} for c in calls.values()] == \
        [c["function"] for c in done]
    assert done and done[-1]["function"]["arguments"] in text
    assert all("tool_call>" not in c["function"]["arguments"] for c in done)


def test_a_cut_inside_the_name_reports_no_call_and_no_markup() -> None:
    stream = parser()
    assert stream.feed('<tool_call>{"name": "get_wea') == ("", [])
    assert stream.finish("length") == "length" and stream.tool_calls() == []
    assert stream.mode == "calls"  # the reply carries no content


def test_plain_text_streams_as_content() -> None:
    stream = parser()
    assert stream.feed("Hello") == ("Hello", [])
    assert stream.feed(" <b>") == (" <b>", [])
    assert stream.finish("stop") == "stop" and stream.tool_calls() == []


@pytest.mark.parametrize(
    "text",
    [
        "<b>not a call</b>",
        '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>',  # not an offered function
        '<tool_call>{"name": "add", "arguments": {"a": 1}} </tool_call>',
        '<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>junk',
    ],
)
def test_output_outside_the_format_is_a_clear_error(text: str) -> None:
    with pytest.raises(MalformedToolCall):
        parser().feed(text)


HERMES_OUTPUT = (
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "\\"}\\n</tool_call>", '
    '"unit": "c"}}\n</tool_call>\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}'
    "\n</tool_call>"
)


@pytest.mark.parametrize("size", [1, 5, len(HERMES_OUTPUT)])
def test_hermes_calls_one_a_line(size: int) -> None:
    calls, reason = streamed(HERMES_OUTPUT, size, fmt=HERMES_FORMAT)
    assert reason == "tool_calls"
    assert json.loads(calls[0]["arguments"]) == {"city": '"}\n</tool_call>', "unit": "c"}
    assert json.loads(calls[1]["arguments"]) == {"a": 1, "b": 2}


def test_llama3_takes_one_call_with_parameters() -> None:
    text = '{"name": "add", "parameters": {"a": [1, {"b": null}], "c": "}"}}'
    calls, reason = whole(text, fmt=LLAMA3_FORMAT)
    assert reason == "tool_calls"
    assert calls[0]["function"] == {"name": "add",
                                    "arguments": '{"a": [1, {"b": null}], "c": "}"}'}
    with pytest.raises(MalformedToolCall):
        parser(LLAMA3_FORMAT).feed(text + text)
