"""Anthropic by translation: the test upstream speaks the Messages API (checked with the official
``anthropic`` SDK), and Switchboard serves it to the ``openai`` SDK, streaming and tools
included."""

from __future__ import annotations

import json

import anthropic
import openai

from tests.gateway.conftest import MSG, OTHER_KEY
from tests.gateway.upstream import FakeUpstream

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather", "description": "Weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    },
}


def test_the_test_upstream_speaks_anthropics_wire_format(fake: FakeUpstream) -> None:
    sdk = anthropic.Anthropic(base_url=fake.url("/anth"), api_key="k", max_retries=0)
    message = sdk.messages.create(model="claude-test", max_tokens=50, messages=MSG)
    assert message.content[0].text == "Bonjour from Claude" and message.stop_reason == "end_turn"
    with sdk.messages.stream(model="claude-test", max_tokens=50, messages=MSG) as stream:
        assert "".join(stream.text_stream) == "Bonjour from Claude"
        assert stream.get_final_message().usage.output_tokens == 7


def test_chat_completion_through_anthropic(client: openai.OpenAI, fake: FakeUpstream) -> None:
    completion = client.chat.completions.create(
        model="claude", max_tokens=64, temperature=0.5, stop=["END"],
        messages=[{"role": "system", "content": "Be brief."}, *MSG],
    )
    assert completion.choices[0].message.content == "Bonjour from Claude"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 21 and completion.usage.completion_tokens == 7
    assert completion.model_extra["metrics"]["output_tokens"] == 7
    sent = fake.requests[-1]
    assert sent.path == "/anth/v1/messages" and sent.headers["x-api-key"] == OTHER_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.body["system"] == "Be brief." and sent.body["stop_sequences"] == ["END"]
    assert sent.body["messages"] == [{"role": "user", "content": [{"type": "text",
                                                                   "text": "Hello"}]}]
    assert sent.body["max_tokens"] == 64 and sent.body["temperature"] == 0.5


def test_streaming_through_anthropic(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model="claude", messages=MSG, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Bonjour from Claude"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.prompt_tokens == 21 and chunks[-1].usage.completion_tokens == 7


def test_tools_through_anthropic(client: openai.OpenAI, fake: FakeUpstream) -> None:
    completion = client.chat.completions.create(
        model="claude", messages=MSG, tools=[WEATHER], tool_choice="required")
    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {
        "city": "Paris"}
    sent = fake.requests[-1].body
    assert sent["tool_choice"] == {"type": "any"}
    assert sent["tools"][0]["input_schema"]["required"] == ["city"]

    # The call and its result go back as tool_use / tool_result blocks.
    client.chat.completions.create(model="claude", messages=[
        *MSG, completion.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"}])
    history = fake.requests[-1].body["messages"]
    assert history[1]["content"][0] == {"type": "tool_use", "id": call.id, "name": "get_weather",
                                        "input": {"city": "Paris"}}
    assert history[2]["content"][0]["type"] == "tool_result"
    assert history[2]["content"][0]["tool_use_id"] == call.id


def test_streamed_tool_calls_reassemble_with_the_sdk_helpers(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model="claude", messages=MSG, tools=[WEATHER], tool_choice="required"
    ) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.id == "toolu_fake01" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert final.choices[0].finish_reason == "tool_calls"


def test_parameters_anthropic_cannot_honour_are_refused(client: openai.OpenAI) -> None:
    for extra in ({"n": 2}, {"logprobs": True}, {"response_format": {"type": "json_object"}}):
        try:
            client.chat.completions.create(model="claude", messages=MSG, **extra)
        except openai.BadRequestError as exc:
            assert exc.body["param"] in extra
        else:
            raise AssertionError(f"{extra} was accepted")
