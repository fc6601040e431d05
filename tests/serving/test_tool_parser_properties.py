"""Property-based tests of the tool-call parser (``serving.tool_parser``) with hypothesis.

Outputs are generated the way the enforcing grammar lets a model write them (each is checked
against the grammar ``plan_tools`` builds, byte by byte): one or more calls in each call format,
with arbitrary JSON arguments whose strings hold ``</tool_call>``, braces, quotes, escapes and
unicode, or plain text. Read whole and read in arbitrary pieces, the output gives the same calls
and content, the streamed deltas add up to the whole reply (one entry per call index per
delta), and each call's arguments load back to the generated value. An output cut anywhere (as
``max_tokens`` cuts it) streams and parses alike too.
"""

from __future__ import annotations

import json
from typing import Any

import llguidance
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.serving.tool_parser import ToolCallParser
from switchboard.serving.tools import (
    HERMES_FORMAT,
    LLAMA3_FORMAT,
    SWITCHBOARD_FORMAT,
    CallFormat,
    plan_tools,
)

FORMATS = [SWITCHBOARD_FORMAT, HERMES_FORMAT, LLAMA3_FORMAT]
NAMES = ["get_weather", "search-docs", "f2"]
ANY_OBJECT = {"type": "object", "additionalProperties": True}
TRICKY = ["</tool_call>", "}</tool_call>", "<tool_call>", "{", "}", "[", "]", '"', "\\", "\\n",
          '", "arguments": ', "\n", "\u2028", "é", "日本", "😀", "\x00", "\t"]

texts = st.one_of(
    st.text(max_size=12),
    st.lists(st.sampled_from(TRICKY), max_size=4).map("".join),
    st.tuples(st.text(max_size=6), st.sampled_from(TRICKY), st.text(max_size=6)).map("".join),
)
scalars = st.one_of(
    st.none(), st.booleans(), texts,
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)
    ),
    max_leaves=12,
)
arguments = st.dictionaries(texts, values, max_size=5)


def grammar(fmt: CallFormat) -> str:
    tools = [{"type": "function", "function": {"name": n, "parameters": ANY_OBJECT}}
             for n in NAMES]
    req = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tools})
    plan = plan_tools(req, fmt)
    assert plan is not None
    return plan.grammar


GRAMMARS = {fmt.family: grammar(fmt) for fmt in FORMATS}
BYTES = llguidance.LLTokenizer("byte")


def grammar_accepts(fmt: CallFormat, text: str) -> bool:
    matcher = llguidance.LLMatcher(BYTES, GRAMMARS[fmt.family], log_level=0)
    return all(matcher.consume_token(b) for b in BYTES.tokenize_bytes(text.encode())) \
        and matcher.is_accepting()


def grammar_json(value: Any) -> str:
    """JSON as the grammar lets it be written: unicode as itself (no ``\\uXXXX`` for é or 😀),
    control characters and DEL escaped."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


@st.composite
def outputs(draw: st.DrawFn) -> tuple[CallFormat, str, list[tuple[str, Any, str]]]:
    """A call format, an output the grammar allows in it, and the calls it holds (name, the
    arguments and their JSON text)."""
    fmt = draw(st.sampled_from(FORMATS))
    if draw(st.integers(0, 5)) == 0:  # plain text (it cannot start like a call)
        text = draw(st.text(min_size=1).filter(lambda t: not t.startswith(fmt.head("")[0])))
        return fmt, text, []
    n = draw(st.integers(1, 3)) if fmt.parallel else 1
    calls = []
    for _ in range(n):
        args = draw(arguments)
        calls.append((draw(st.sampled_from(NAMES)), args, grammar_json(args)))
    text = fmt.separator.join(fmt.head(name) + args + fmt.tail for name, _, args in calls)
    return fmt, text, calls


def pieces(draw: st.DrawFn, text: str) -> list[str]:
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]


def read_whole(fmt: CallFormat, text: str, reason: str) -> tuple[str, list[dict], str]:
    parser = ToolCallParser(fmt, NAMES)
    content, _ = parser.feed(text)
    return content, parser.tool_calls(), parser.finish(reason)


def read_streamed(fmt: CallFormat, chunks: list[str], reason: str
                  ) -> tuple[str, list[dict], str]:
    """The reply a client builds from the streamed deltas (as the openai SDK accumulates)."""
    parser = ToolCallParser(fmt, NAMES)
    content = ""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        text, deltas = parser.feed(chunk)
        content += text
        indexes = [d["index"] for d in deltas]
        assert len(indexes) == len(set(indexes))  # one entry per call index
        for d in deltas:
            if d["index"] not in calls:
                assert {"id", "type"} <= d.keys() and d["function"]["name"] in NAMES
                calls[d["index"]] = {"id": d["id"], "type": d["type"],
                                     "function": {"name": d["function"]["name"],
                                                  "arguments": ""}}
            calls[d["index"]]["function"]["arguments"] += d["function"]["arguments"]
    return content, [calls[i] for i in sorted(calls)], parser.finish(reason)


def without_ids(calls: list[dict]) -> list[dict]:
    return [{**c, "id": None} for c in calls]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_streamed_and_whole_agree_and_arguments_round_trip(data: st.DataObject) -> None:
    fmt, text, calls = data.draw(outputs())
    assert grammar_accepts(fmt, text), text
    whole = read_whole(fmt, text, "stop")
    streamed = read_streamed(fmt, pieces(data.draw, text), "stop")
    assert (streamed[0], without_ids(streamed[1]), streamed[2]) == \
        (whole[0], without_ids(whole[1]), whole[2])
    if not calls:
        assert whole == (text, [], "stop")
        return
    assert whole[0] == "" and whole[2] == "tool_calls"
    assert [c["function"]["name"] for c in whole[1]] == [name for name, _, _ in calls]
    assert [c["function"]["arguments"] for c in whole[1]] == [text for _, _, text in calls]
    assert [json.loads(c["function"]["arguments"]) for c in whole[1]] == [a for _, a, _ in calls]
    assert all(c["type"] == "function" and c["id"].startswith("call_") for c in whole[1])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_an_output_cut_anywhere_streams_and_parses_alike(data: st.DataObject) -> None:
    fmt, text, calls = data.draw(outputs())
    cut = text[: data.draw(st.integers(0, len(text)))]
    whole = read_whole(fmt, cut, "length")
    streamed = read_streamed(fmt, pieces(data.draw, cut), "length")
    assert (streamed[0], without_ids(streamed[1]), streamed[2]) == \
        (whole[0], without_ids(whole[1]), whole[2])
    assert whole[2] == "length"
    if calls and cut:  # the arguments so far are a prefix of the generated ones
        assert whole[0] == "" and len(whole[1]) <= len(calls)
        for got, (name, _, args) in zip(whole[1], calls):
            assert got["function"]["name"] == name
            assert args.startswith(got["function"]["arguments"])
        assert [c["function"]["arguments"] for c in whole[1][:-1]] == \
            [args for _, _, args in calls[: max(0, len(whole[1]) - 1)]]
    elif not calls:
        assert whole == (cut, [], "length")
