"""Anthropic's Messages API (``/v1/messages``) through the official ``anthropic`` SDK, unchanged:
whole and streamed messages, system prompts, stop sequences, max tokens, tools, tool results,
token counts and errors in Anthropic's format; and the translation's stream bookkeeping."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import pytest

from switchboard.protocol.anthropic_messages import MessagesRequest
from switchboard.protocol.anthropic_translation import MessageStream, to_chat_body
from switchboard.protocol.chat import ChatCompletionRequest
from tests.conftest import API_KEY, RunningServer

MODEL = "smollm2-135m-instruct"
# This SDK's create() has no sampling arguments; the API still takes them.
GREEDY = {"temperature": 0}
ASK = [{"role": "user", "content": "Tell me a short story about a cat."}]
PICK: Any = {"name": "pick", "description": "Pick a digit",
             "input_schema": {"type": "object",
                              "properties": {"n": {"type": "integer", "minimum": 0,
                                                   "maximum": 9}},
                              "required": ["n"]}}


@pytest.fixture(scope="module")
def client(server: RunningServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base, api_key=API_KEY, max_retries=0,
                               timeout=120)


def text_of(message: Any) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


def test_create_answers_a_message(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=8, messages=ASK, extra_body=GREEDY)
    assert message.id.startswith("msg_") and message.type == "message"
    assert message.role == "assistant" and message.model == MODEL
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens") and message.stop_sequence is None
    assert message.usage.input_tokens > 0 and 0 < message.usage.output_tokens <= 8


def test_max_tokens_is_the_stop_reason_when_reached(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=3, messages=ASK, extra_body=GREEDY)
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 3


def test_system_prompt_reaches_the_model(client: anthropic.Anthropic) -> None:
    brief = client.messages.count_tokens(model=MODEL, messages=ASK, system="Be brief.")
    with_system = client.messages.count_tokens(
        model=MODEL, messages=ASK,
        system=[{"type": "text", "text": "You are a pirate who answers in rhymes."}])
    assert with_system.input_tokens > brief.input_tokens
    message = client.messages.create(model=MODEL, max_tokens=8, messages=ASK, extra_body=GREEDY,
                                     system="You are a pirate who answers in rhymes.")
    assert message.usage.input_tokens == with_system.input_tokens


def test_stream_gives_the_same_text_and_final_message(client: anthropic.Anthropic) -> None:
    whole = client.messages.create(model=MODEL, max_tokens=12, messages=ASK, extra_body=GREEDY)
    with client.messages.stream(model=MODEL, max_tokens=12, messages=ASK,
                                extra_body=GREEDY) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == text_of(whole) == text_of(final)
    assert final.stop_reason == whole.stop_reason
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens


def test_raw_stream_has_anthropic_event_sequence(server: RunningServer) -> None:
    body = {"model": MODEL, "max_tokens": 4, "messages": ASK, "stream": True}
    with httpx.stream("POST", server.base + "/v1/messages", json=body, timeout=120,
                      headers={"Authorization": f"Bearer {API_KEY}"}) as resp:
        assert resp.status_code == 200
        names = [line.removeprefix("event: ") for line in resp.iter_lines()
                 if line.startswith("event: ")]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_metrics_ride_on_the_message_and_the_final_delta(server: RunningServer) -> None:
    """Switchboard's per-request metrics, where Anthropic's shapes have room for an extra
    field: on a whole message, and on a stream's ``message_delta``."""
    headers = {"x-api-key": API_KEY}
    body = {"model": MODEL, "max_tokens": 4, "messages": ASK, **GREEDY}
    whole = httpx.post(server.base + "/v1/messages", json=body, headers=headers, timeout=120)
    metrics = whole.json()["metrics"]
    assert metrics["output_tokens"] == whole.json()["usage"]["output_tokens"] == 4
    assert metrics["latency_s"] > 0 and "cost_usd" in metrics
    with httpx.stream("POST", server.base + "/v1/messages", json={**body, "stream": True},
                      headers=headers, timeout=120) as resp:
        events = [json.loads(line.removeprefix("data: ")) for line in resp.iter_lines()
                  if line.startswith("data: ")]
    delta = next(e for e in events if e["type"] == "message_delta")
    assert delta["metrics"]["output_tokens"] == delta["usage"]["output_tokens"] == 4
    assert "metrics" not in events[0]["message"]  # absent rather than null where unknown


def test_stop_sequence_is_reported_and_cut(client: anthropic.Anthropic) -> None:
    free = text_of(client.messages.create(model=MODEL, max_tokens=16, messages=ASK,
                                          extra_body=GREEDY))
    words = free.split()
    assert len(words) >= 3
    stop = " " + words[2]
    message = client.messages.create(model=MODEL, max_tokens=16, messages=ASK, extra_body=GREEDY,
                                     stop_sequences=[stop])
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == stop
    assert text_of(message) == free[: free.index(stop)]
    with client.messages.stream(model=MODEL, max_tokens=16, messages=ASK, extra_body=GREEDY,
                                stop_sequences=[stop]) as stream:
        assert "".join(stream.text_stream) == text_of(message)
        final = stream.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == stop


def test_named_tool_gives_a_tool_use_block(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model=MODEL, max_tokens=32, tools=[PICK], tool_choice={"type": "tool", "name": "pick"},
        messages=[{"role": "user", "content": "Pick a digit."}])
    assert message.stop_reason == "tool_use"
    (use,) = [b for b in message.content if b.type == "tool_use"]
    assert use.id.startswith("toolu_") and use.name == "pick"
    assert isinstance(use.input, dict) and 0 <= use.input["n"] <= 9
    with client.messages.stream(
        model=MODEL, max_tokens=32, tools=[PICK], tool_choice={"type": "tool", "name": "pick"},
        messages=[{"role": "user", "content": "Pick a digit."}],
    ) as stream:
        final = stream.get_final_message()
    (streamed,) = [b for b in final.content if b.type == "tool_use"]
    assert streamed.name == "pick" and isinstance(streamed.input, dict) and "n" in streamed.input


def test_tool_result_round_trip(client: anthropic.Anthropic) -> None:
    def history(result: str) -> Any:
        return [
            {"role": "user", "content": "Pick a digit."},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_01", "name": "pick", "input": {"n": 4}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01",
                 "content": [{"type": "text", "text": result}]},
                {"type": "text", "text": "What did you pick?"}]},
        ]

    short = client.messages.count_tokens(model=MODEL, tools=[PICK], messages=history("4"))
    long = client.messages.count_tokens(model=MODEL, tools=[PICK],
                                        messages=history("4, picked at random from ten digits"))
    assert long.input_tokens > short.input_tokens  # the result's text is in the prompt
    message = client.messages.create(model=MODEL, max_tokens=8, tools=[PICK],
                                     tool_choice={"type": "none"}, messages=history("4"))
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.content and message.content[0].type == "text"


def test_bad_key_is_an_anthropic_authentication_error(server: RunningServer) -> None:
    bad = anthropic.Anthropic(base_url=server.base, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        bad.messages.create(model=MODEL, max_tokens=4, messages=ASK)
    assert caught.value.status_code == 401
    assert caught.value.body["type"] == "error"  # type: ignore[index]
    assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


def test_missing_max_tokens_is_a_400_invalid_request(server: RunningServer) -> None:
    resp = httpx.post(server.base + "/v1/messages", json={"model": MODEL, "messages": ASK},
                      headers={"x-api-key": API_KEY}, timeout=30)
    assert resp.status_code == 400
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]


def test_unknown_model_is_a_404_not_found(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="no-such-model", max_tokens=4, messages=ASK)
    assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_image_is_refused_for_the_local_model(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=MODEL, max_tokens=4, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "iVBORw0KGgo="}},
            {"type": "text", "text": "What is this?"}]}])
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


def test_unknown_fields_are_named_in_a_header(server: RunningServer) -> None:
    resp = httpx.post(server.base + "/v1/messages", timeout=120,
                      headers={"x-api-key": API_KEY},
                      json={"model": MODEL, "max_tokens": 2, "messages": ASK,
                            "thinking": {"type": "enabled", "budget_tokens": 1024}})
    assert resp.status_code == 200
    assert resp.headers["x-switchboard-ignored-params"] == "thinking"


def test_schema_declares_the_error_statuses(server: RunningServer) -> None:
    schema = httpx.get(server.base + "/openapi.json", timeout=30).json()
    responses = schema["paths"]["/v1/messages"]["post"]["responses"]
    assert {"200", "400", "401", "404", "429"} <= set(responses)
    assert "422" not in responses  # validation failures are Anthropic's 400s here


# --- The stream translation, without a server ---------------------------------------------


def chunk(content: str | None = None, finish: str | None = None,
          calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if content is not None:
        delta["content"] = content
    if calls is not None:
        delta["tool_calls"] = calls
    return {"id": "chatcmpl-x", "choices": [{"index": 0, "delta": delta,
                                             "finish_reason": finish}]}


def test_stream_holds_back_a_stop_sequence_split_over_chunks() -> None:
    stream = MessageStream(MODEL, ["END"])
    events = []
    for part in ("Hello E", "N", "D"):
        events += stream.feed(chunk(part))
    events += stream.feed(chunk(finish="stop"))
    events += stream.end()
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == "Hello "
    (delta,) = [e for e in events if e.type == "message_delta"]
    assert delta.delta.stop_reason == "stop_sequence" and delta.delta.stop_sequence == "END"


def test_stream_turns_tool_call_deltas_into_input_json_deltas() -> None:
    stream = MessageStream(MODEL, [])
    events = stream.feed(chunk(calls=[{"index": 0, "id": "call_1", "type": "function",
                                       "function": {"name": "pick", "arguments": ""}}]))
    events += stream.feed(chunk(calls=[{"index": 0, "function": {"arguments": '{"n": 3}'}}]))
    events += stream.feed(chunk(finish="tool_calls"))
    events += stream.end()
    kinds = [e.type for e in events]
    assert kinds == ["message_start", "content_block_start", "ping", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]
    assert events[1].content_block.id == "toolu_1"
    assert events[3].delta.partial_json == '{"n": 3}'
    assert events[5].delta.stop_reason == "tool_use"


def test_request_translates_tools_results_and_choices() -> None:
    request = MessagesRequest.model_validate({
        "model": MODEL, "max_tokens": 8, "system": [{"type": "text", "text": "Be brief."}],
        "tools": [PICK], "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "metadata": {"user_id": "u1"}, "stop_sequences": ["END"], "top_k": 5,
        "messages": [
            {"role": "user", "content": "Pick."},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Picking."},
                {"type": "tool_use", "id": "toolu_9", "name": "pick", "input": {"n": 2}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_9", "content": "2"},
                {"type": "text", "text": "Again?"}]},
        ],
    })
    body = to_chat_body(request, keep_stop=True)
    chat = ChatCompletionRequest.model_validate(body)  # a valid chat completion
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "tool",
                                                     "user"]
    assert body["messages"][2]["tool_calls"][0]["function"] == {"name": "pick",
                                                                "arguments": '{"n": 2}'}
    assert body["messages"][3] == {"role": "tool", "tool_call_id": "toolu_9", "content": "2"}
    assert chat.tool_choice == "required" and chat.parallel_tool_calls is False
    assert chat.user == "u1" and chat.top_k == 5 and chat.max_tokens == 8
    assert chat.stop == ["END"] and chat.include_stop_str_in_output is True
