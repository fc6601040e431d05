"""The Responses API's request onto a chat completion and the answer (whole and streamed) back,
checked against the official ``openai`` SDK's own types and its stream accumulator."""

from __future__ import annotations

from typing import Any

import pytest
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseItemList, ResponseStreamEvent
from openai.types.responses.response_item import ResponseItem
from pydantic import TypeAdapter, ValidationError

from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.protocol.responses_api import InputItemList, ResponsesRequest
from switchboard.protocol.responses_stream import ResponseStream
from switchboard.protocol.responses_translation import (
    input_items,
    refusal_of,
    response_shell,
    to_chat_body,
    to_response,
)

EVENTS = TypeAdapter(ResponseStreamEvent)
TOOL = {"type": "function", "name": "pick", "description": "Pick a digit", "strict": True,
        "parameters": {"type": "object", "properties": {"n": {"type": "integer"}},
                       "required": ["n"], "additionalProperties": False}}


def chat_of(body: dict[str, Any], history: list[dict[str, Any]] | None = None
            ) -> dict[str, Any]:
    req = ResponsesRequest.model_validate(body)
    assert refusal_of(req) is None
    chat = to_chat_body(req, [*(history or []), *input_items(req)])
    ChatCompletionRequest.model_validate(chat)  # a valid chat request
    return chat


def test_string_input_and_instructions_become_system_then_user() -> None:
    chat = chat_of({"model": "m", "input": "Hi", "instructions": "Be brief.",
                    "max_output_tokens": 7, "temperature": 0, "top_p": 0.5, "user": "u1"})
    assert chat["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert chat["max_completion_tokens"] == 7 and chat["temperature"] == 0
    assert chat["top_p"] == 0.5 and chat["user"] == "u1" and "stream" not in chat


def test_items_become_messages_tool_calls_and_tool_results() -> None:
    chat = chat_of({"model": "m", "stream": True, "input": [
        {"role": "developer", "content": "Rules."},
        {"role": "user", "content": [
            {"type": "input_text", "text": "Look:"},
            {"type": "input_image", "image_url": "data:image/png;base64,AA", "detail": "low"}]},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "Calling.", "annotations": []}]},
        {"type": "function_call", "call_id": "call_1", "name": "pick", "arguments": "{\"n\":1}"},
        {"type": "function_call", "call_id": "call_2", "name": "pick", "arguments": "{\"n\":2}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "one"},
        {"type": "function_call_output", "call_id": "call_2",
         "output": [{"type": "input_text", "text": "two"}]},
    ]})
    messages = chat["messages"]
    assert [m["role"] for m in messages] == ["developer", "user", "assistant", "tool", "tool"]
    assert messages[1]["content"][1] == {"type": "image_url", "image_url": {
        "url": "data:image/png;base64,AA", "detail": "low"}}
    assert messages[2]["content"] == "Calling."
    assert [c["id"] for c in messages[2]["tool_calls"]] == ["call_1", "call_2"]
    assert messages[3] == {"role": "tool", "tool_call_id": "call_1", "content": "one"}
    assert messages[4]["content"] == "two"
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}


def test_a_call_without_preceding_assistant_text_is_its_own_assistant_message() -> None:
    chat = chat_of({"input": [
        {"role": "user", "content": "Pick."},
        {"type": "function_call", "call_id": "c", "name": "pick", "arguments": "{}"}]})
    assert chat["messages"][1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "pick", "arguments": "{}"}}]}


def test_tools_choice_and_formats_take_their_chat_forms() -> None:
    chat = chat_of({"input": "x", "tools": [TOOL], "parallel_tool_calls": False,
                    "tool_choice": {"type": "function", "name": "pick"},
                    "text": {"format": {"type": "json_schema", "name": "out", "strict": True,
                                        "schema": {"type": "object"}}},
                    "reasoning": {"effort": "low"}, "seed": 3, "top_k": 1})
    assert chat["tools"] == [{"type": "function", "function": {
        "name": "pick", "description": "Pick a digit", "parameters": TOOL["parameters"],
        "strict": True}}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "pick"}}
    assert chat["parallel_tool_calls"] is False
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "out", "schema": {"type": "object"}, "strict": True}}
    assert chat["reasoning_effort"] == "low"
    assert chat["seed"] == 3 and chat["top_k"] == 1  # chat extensions pass through
    assert chat_of({"input": "x", "text": {"format": {"type": "json_object"}}})[
        "response_format"] == {"type": "json_object"}
    assert "response_format" not in chat_of({"input": "x", "text": {"format": {"type": "text"}}})


def test_history_comes_before_the_new_input() -> None:
    first = ResponsesRequest.model_validate({"input": "What is 2+2?", "instructions": "Old."})
    answered = to_response({"choices": [{"message": {"content": "4"}, "finish_reason": "stop"}],
                            "usage": {}}, response_shell(first, "resp_1", "m"))
    history = [*input_items(first), *answered.model_dump(mode="json")["output"]]
    chat = chat_of({"input": "And 3+3?", "instructions": "New."}, history)
    assert [(m["role"], m["content"]) for m in chat["messages"]] == [
        ("system", "New."),  # instructions are not carried over
        ("user", [{"type": "text", "text": "What is 2+2?"}]), ("assistant", "4"),
        ("user", [{"type": "text", "text": "And 3+3?"}])]


@pytest.mark.parametrize(("body", "param"), [
    ({"background": True}, "background"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"prompt": {"id": "pmpt_1"}}, "prompt"),
    ({"include": ["message.output_text.logprobs"]}, "include"),
    ({"truncation": "auto"}, "truncation"),
    ({"max_tool_calls": 2}, "max_tool_calls"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"reasoning": {"summary": "auto"}}, "reasoning.summary"),
    ({"max_tokens": 5}, "max_tokens"),
    ({"messages": []}, "messages"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
     "input[0].content[0]"),
])
def test_what_cannot_be_honoured_is_refused_by_name(body: dict[str, Any], param: str) -> None:
    req = ResponsesRequest.model_validate({"input": "x", **body})
    refusal = refusal_of(req)
    assert refusal is not None and refusal.param == param


def test_accepted_as_is() -> None:
    req = ResponsesRequest.model_validate({"input": "x", "include": [], "truncation": "disabled",
                                           "background": False, "store": False})
    assert refusal_of(req) is None


@pytest.mark.parametrize(("body", "kind"), [
    ({"tools": [{"type": "web_search"}]}, "unsupported_tool"),
    ({"tools": [TOOL, {"type": "mcp", "server_label": "x"}]}, "unsupported_tool"),
    ({"tool_choice": {"type": "file_search"}}, "unsupported_tool_choice"),
    ({"input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}, "unsupported_item"),
])
def test_built_in_tools_and_other_items_fail_validation(body: dict[str, Any], kind: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ResponsesRequest.model_validate({"input": "x", **body})
    assert kind in {e["type"] for e in caught.value.errors()}


def test_completion_becomes_an_sdk_valid_response() -> None:
    req = ResponsesRequest.model_validate({"model": "m", "input": "x", "tools": [TOOL],
                                           "metadata": {"a": "b"}, "max_output_tokens": 9})
    completion = {"choices": [{"finish_reason": "tool_calls", "message": {
        "content": "Sure.", "tool_calls": [{"id": "call_9", "type": "function", "function": {
            "name": "pick", "arguments": "{\"n\": 3}"}}]}}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 4,
                  "prompt_tokens_details": {"cached_tokens": 5}},
        "metrics": {"latency_s": 0.1}}
    answer = to_response(completion, response_shell(req, "resp_1", "m"))
    sdk = Response.model_validate(answer.model_dump(mode="json"))
    assert sdk.status == "completed" and sdk.output_text == "Sure."
    message, call = sdk.output
    assert message.type == "message" and message.id.startswith("msg_")
    assert call.type == "function_call" and call.id is not None and call.id.startswith("fc_")
    assert (call.call_id, call.name, call.arguments) == ("call_9", "pick", "{\"n\": 3}")
    assert sdk.usage is not None and sdk.usage.input_tokens == 11
    assert sdk.usage.input_tokens_details.cached_tokens == 5 and sdk.usage.total_tokens == 15
    assert sdk.metadata == {"a": "b"} and sdk.max_output_tokens == 9
    assert sdk.tools[0].name == "pick" and answer.metrics == {"latency_s": 0.1}


def test_length_makes_an_incomplete_response() -> None:
    req = ResponsesRequest.model_validate({"input": "x"})
    answer = to_response({"choices": [{"finish_reason": "length", "message": {
        "content": "Once upon"}}], "usage": {"prompt_tokens": 2, "completion_tokens": 2}},
        response_shell(req, "resp_1", "m"))
    assert answer.status == "incomplete" and answer.incomplete_details is not None
    assert answer.incomplete_details.reason == "max_output_tokens"
    assert answer.output[0].status == "incomplete"


def _chunk(content: str | None = None, call: dict[str, Any] | None = None,
           finish: str | None = None, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if content is not None:
        delta["content"] = content
    if call is not None:
        delta["tool_calls"] = [call]
    choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"id": "chatcmpl-1", "model": "m", "choices": choices, "usage": usage}


def _stream(chunks: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], ResponseStream]:
    translator = ResponseStream(response_shell(
        ResponsesRequest.model_validate({"input": "x", "tools": [TOOL]}), "resp_1", "m"))
    events = [e for chunk in chunks for e in translator.feed(chunk)] + translator.end()
    return events, translator


def test_stream_events_are_openais_and_add_up_in_the_sdk() -> None:
    events, translator = _stream([
        _chunk("Hel"), _chunk("lo"),
        _chunk(call={"index": 0, "id": "call_1", "type": "function",
                     "function": {"name": "pick", "arguments": ""}}),
        _chunk(call={"index": 0, "function": {"arguments": "{\"n\":"}}),
        _chunk(call={"index": 0, "function": {"arguments": " 4}"}}),
        _chunk(finish="tool_calls"),
        _chunk(usage={"prompt_tokens": 3, "completion_tokens": 5}),
    ])
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=[TOOL], text_format=omit)
    for event in events:
        state.handle_event(EVENTS.validate_python(event))  # the SDK's own types and accumulator
    final = events[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == "Hello"
    assert final["output"][1]["arguments"] == "{\"n\": 4}"
    assert final["usage"]["output_tokens"] == 5
    assert translator.response.model_dump(mode="json") == final
    done = next(e for e in events if e["type"] == "response.output_text.done")
    assert done["text"] == "Hello" and done["logprobs"] == []


def test_a_stream_cut_by_length_ends_incomplete() -> None:
    events, _ = _stream([_chunk("Once"), _chunk(finish="length")])
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert events[-2]["item"]["status"] == "incomplete"


def test_a_failed_stream_ends_with_an_error_and_response_failed() -> None:
    translator = ResponseStream(response_shell(ResponsesRequest(input="x"), "resp_1", "m"))
    events = translator.feed(_chunk("Par")) + translator.fail("server_error", "boom")
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    for event in events:
        EVENTS.validate_python(event)
    assert events[-1]["response"]["status"] == "failed"
    assert events[-1]["response"]["error"] == {"code": "server_error", "message": "boom"}


def test_input_items_and_their_pages_are_sdk_items() -> None:
    req = ResponsesRequest.model_validate({"input": [
        {"role": "user", "content": "a"},
        {"type": "function_call", "call_id": "c", "name": "pick", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c", "output": "b"},
        {"role": "assistant", "content": "c", "id": "msg_given"}]})
    items = input_items(req)
    assert [i["id"][:3] for i in items] == ["msg", "fc_", "fco", "msg"]
    assert items[-1]["id"] == "msg_given"
    for item in items:
        TypeAdapter(ResponseItem).validate_python(item)
    newest = InputItemList.page(items, limit=3)
    assert [i["id"] for i in newest.data] == [i["id"] for i in reversed(items)][:3]
    assert newest.has_more and newest.first_id == items[-1]["id"]
    rest = InputItemList.page(items, limit=3, after=newest.last_id)
    assert rest.data == [items[0]] and not rest.has_more
    oldest = InputItemList.page(items, order="asc", limit=2, after=items[0]["id"])
    assert oldest.data == items[1:3] and oldest.has_more
    ResponseItemList.model_validate(oldest.model_dump())
