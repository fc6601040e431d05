"""OpenAI's Responses API (``/v1/responses``) through the official ``openai`` SDK and the OpenAI
Agents SDK, unchanged: whole and streamed responses, instructions, structured output parsed into
a pydantic model, ``previous_response_id`` chains, a function tool round trip, stored responses
(get, delete, input items) seen only by the key that made them, refusals in OpenAI's error
format, and one ledger row per answered request."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from agents import (
    Agent,
    ModelSettings,
    Runner,
    function_tool,
    set_default_openai_client,
    set_tracing_disabled,
)
from agents.models.openai_responses import OpenAIResponsesModel
from pydantic import BaseModel, Field

from switchboard.http.routes.responses import _Storing
from switchboard.protocol.responses_api import ResponsesRequest
from switchboard.protocol.responses_translation import response_shell
from tests.conftest import RunningServer, start_server, stop_server

MODEL = "smollm2-135m-instruct"
ADMIN_KEY = "sb-responses-admin-0123456789"
GREEDY: dict[str, Any] = {"temperature": 0}
PICK: Any = {"type": "function", "name": "pick", "description": "Pick a digit", "strict": True,
             "parameters": {"type": "object", "additionalProperties": False,
                            "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}},
                            "required": ["n"]}}


class Admin:
    def __init__(self, server: RunningServer) -> None:
        self.http = httpx.Client(base_url=server.base, timeout=30,
                                 headers={"authorization": f"Bearer {ADMIN_KEY}"})

    def key(self, **spec: Any) -> dict[str, Any]:
        created = self.http.post("/admin/keys", json={"name": "responses", **spec})
        assert created.status_code == 201, created.text
        return created.json()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(tmp_path_factory.mktemp("responses"), "--admin-key", ADMIN_KEY)
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> Iterator[Admin]:
    a = Admin(server)
    yield a
    a.http.close()


def sdk(server: RunningServer, key: dict[str, Any]) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.v1, api_key=key["key"], max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def client(server: RunningServer, admin: Admin) -> openai.OpenAI:
    return sdk(server, admin.key())


def test_create_answers_with_text_and_usage(client: openai.OpenAI) -> None:
    response = client.responses.create(model=MODEL, input="Tell me a story about a cat.",
                                       max_output_tokens=6, **GREEDY)
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.model == MODEL and response.store is True
    (message,) = response.output
    assert message.type == "message" and message.id.startswith("msg_")
    assert message.content[0].type == "output_text" and response.output_text
    assert response.usage is not None and response.usage.input_tokens > 0
    assert response.usage.output_tokens == 6 and response.usage.total_tokens == (
        response.usage.input_tokens + 6)
    # cut by max_output_tokens: incomplete, as OpenAI reports it
    assert response.status == "incomplete" and response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.model_extra is not None and "metrics" in response.model_extra


def test_instructions_reach_the_model(client: openai.OpenAI) -> None:
    # (compared with other instructions: without any, the template puts in a default one)
    plain = client.responses.create(model=MODEL, input="Hi", max_output_tokens=2,
                                    instructions="Be brief.", **GREEDY)
    instructed = client.responses.create(model=MODEL, input="Hi", max_output_tokens=2,
                                         instructions="You are a pirate who answers in rhymes.",
                                         **GREEDY)
    assert instructed.instructions == "You are a pirate who answers in rhymes."
    assert plain.usage is not None and instructed.usage is not None
    assert instructed.usage.input_tokens > plain.usage.input_tokens


def test_stream_events_add_up_to_the_whole_answer(client: openai.OpenAI) -> None:
    whole = client.responses.create(model=MODEL, input="Name three colours.",
                                    max_output_tokens=10, **GREEDY)
    with client.responses.stream(model=MODEL, input="Name three colours.",
                                 max_output_tokens=10, **GREEDY) as stream:
        events = list(stream)
    # cut by max_output_tokens, it ends with response.incomplete, as OpenAI's does (which
    # this SDK's get_final_response does not take: it waits for response.completed)
    assert events[-1].type == "response.incomplete"
    final = events[-1].response
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.incomplete"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text == whole.output_text
    assert final.usage is not None and whole.usage is not None
    assert final.usage.output_tokens == whole.usage.output_tokens == 10


class Digit(BaseModel):
    n: int = Field(ge=0, le=9)


def test_parse_fills_a_pydantic_model(client: openai.OpenAI) -> None:
    parsed = client.responses.parse(model=MODEL, input="Pick a digit.", text_format=Digit,
                                    max_output_tokens=40, **GREEDY)
    assert parsed.status == "completed"
    assert isinstance(parsed.output_parsed, Digit)
    assert parsed.text is not None and parsed.text.format is not None
    assert parsed.text.format.type == "json_schema"
    with client.responses.stream(model=MODEL, input="Pick a digit.", text_format=Digit,
                                 max_output_tokens=40, **GREEDY) as stream:
        streamed = stream.get_final_response()
    assert streamed.output_parsed == parsed.output_parsed


def _texts(items: list[Any]) -> list[tuple[str, str]]:
    return [(i.role, "".join(p.text for p in i.content)) for i in items]


def test_previous_response_id_chains_turns(client: openai.OpenAI) -> None:
    first = client.responses.create(model=MODEL, input="My name is Ada.", max_output_tokens=5,
                                    instructions="Be brief.", **GREEDY)
    second = client.responses.create(model=MODEL, input="What is my name?", max_output_tokens=5,
                                     previous_response_id=first.id, **GREEDY)
    third = client.responses.create(model=MODEL, input="Spell it.", max_output_tokens=5,
                                    previous_response_id=second.id, **GREEDY)
    assert third.previous_response_id == second.id
    usage = [r.usage for r in (first, second, third)]
    assert all(u is not None for u in usage)
    # each turn's prompt holds the one before it, its answer and the new input
    assert usage[1].input_tokens > usage[0].output_tokens + 5  # type: ignore[union-attr]
    assert usage[2].input_tokens > usage[1].input_tokens + usage[1].output_tokens  # type: ignore[union-attr]
    items = client.responses.input_items.list(third.id, order="asc").data
    assert _texts(items) == [
        ("user", "My name is Ada."), ("assistant", first.output_text),
        ("user", "What is my name?"), ("assistant", second.output_text),
        ("user", "Spell it.")]
    assert items[1].id == first.output[0].id  # the stored output item itself
    unstored = client.responses.create(model=MODEL, input="Hi", max_output_tokens=2,
                                       store=False, **GREEDY)
    assert unstored.store is False
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model=MODEL, input="Again", previous_response_id=unstored.id)
    assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_function_tool_round_trip(client: openai.OpenAI) -> None:
    called = client.responses.create(model=MODEL, input="Pick a digit.", tools=[PICK],
                                     tool_choice={"type": "function", "name": "pick"},
                                     max_output_tokens=30, **GREEDY)
    (call,) = called.output
    assert call.type == "function_call" and call.name == "pick"
    assert call.id is not None and call.id.startswith("fc_") and call.call_id
    assert 0 <= json.loads(call.arguments)["n"] <= 9
    assert called.tool_choice.type == "function"  # type: ignore[union-attr]
    answered = client.responses.create(
        model=MODEL, previous_response_id=called.id, tools=[PICK], tool_choice="none",
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "7"}],
        max_output_tokens=8, **GREEDY)
    assert [item.type for item in answered.output] == ["message"] and answered.output_text
    kinds = [i.type for i in client.responses.input_items.list(answered.id, order="asc").data]
    assert kinds == ["message", "function_call", "function_call_output"]
    with client.responses.stream(model=MODEL, input="Pick a digit.", tools=[PICK],
                                 tool_choice="required", max_output_tokens=30,
                                 **GREEDY) as stream:
        events = list(stream)
        final = stream.get_final_response()
    deltas = "".join(e.delta for e in events
                     if e.type == "response.function_call_arguments.delta")
    (done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    (streamed,) = final.output
    assert streamed.type == "function_call" and streamed.arguments == deltas == done.arguments
    assert isinstance(json.loads(deltas)["n"], int)


def test_stored_responses_are_seen_only_by_their_key(
    server: RunningServer, admin: Admin, client: openai.OpenAI
) -> None:
    other = sdk(server, admin.key())
    made = client.responses.create(model=MODEL, input="Hello", max_output_tokens=3,
                                   metadata={"topic": "greeting"}, **GREEDY)
    fetched = client.responses.retrieve(made.id)
    assert fetched.model_dump() == made.model_dump()
    page = client.responses.input_items.list(made.id)
    assert page.first_id == page.last_id == page.data[0].id and not page.has_more
    for call in (lambda: other.responses.retrieve(made.id),
                 lambda: other.responses.delete(made.id),
                 lambda: other.responses.input_items.list(made.id),
                 lambda: other.responses.create(model=MODEL, input="x",
                                                previous_response_id=made.id)):
        with pytest.raises(openai.NotFoundError) as caught:
            call()
        assert caught.value.status_code == 404
        assert made.id in caught.value.body["message"]  # type: ignore[index]
    assert client.responses.retrieve(made.id).id == made.id  # another key's delete did nothing
    deleted = client.responses.with_raw_response.delete(made.id).http_response.json()
    assert deleted == {"id": made.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)
    missing = httpx.get(server.v1 + "/responses/resp_unknown", timeout=30,
                        headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert missing.status_code == 404 and missing.json()["error"]["type"] == (
        "invalid_request_error")


def test_what_cannot_be_honoured_is_a_400_naming_it(client: openai.OpenAI) -> None:
    refusals: list[tuple[dict[str, Any], str]] = [
        ({"tools": [{"type": "web_search"}]}, "tools"),
        ({"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}, "tools"),
        ({"background": True}, "background"),
        ({"reasoning": {"effort": "high"}}, "reasoning.effort"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"truncation": "auto"}, "truncation"),
        ({"input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}, "input[0]"),
    ]
    for extra, param in refusals:
        body: dict[str, Any] = {"model": MODEL, "input": "Hi", "max_output_tokens": 2, **extra}
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(**body)
        assert caught.value.status_code == 400
        error = caught.value.body
        assert error["param"] == param, error  # type: ignore[index]
        assert error["type"] == "invalid_request_error"  # type: ignore[index]


def test_invalid_bodies_and_queries_are_400s_naming_the_field(server: RunningServer,
                                                              admin: Admin) -> None:
    headers = {"authorization": f"Bearer {admin.key()['key']}",
               "content-type": "application/json"}
    url = server.v1 + "/responses"
    cases: list[tuple[Any, str | None, str]] = [
        ('{"input": ', None, "invalid_json"),
        ({"input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}},
         "text.format.name", "invalid_value"),
        ({"input": [{"role": "user", "content": [{"type": "input_text"}]}]},
         "input[0].content[0].text", "invalid_value"),
        ({"input": "x", "tool_choice": {"type": "function"}}, "tool_choice.name",
         "invalid_value"),
        ({"input": "x", "temperature": 3}, "temperature", "invalid_value"),
    ]
    for body, param, code in cases:
        content = body if isinstance(body, str) else json.dumps(body)
        answer = httpx.post(url, content=content, headers=headers, timeout=30)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["param"] == param, answer.text
        assert answer.json()["error"]["code"] == code
    listed = httpx.get(url + "/resp_x/input_items", params={"limit": 0}, headers=headers,
                       timeout=30)
    assert listed.status_code == 400 and listed.json()["error"]["param"] == "limit"
    for path, query in (("/resp_x", {"stream": "true"}), ("/resp_x", {"include": "a"}),
                        ("/resp_x/input_items", {"include": "a"})):
        refused = httpx.get(url + path, params=query, headers=headers, timeout=30)
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == next(iter(query))


def test_a_response_that_could_not_be_stored_says_so() -> None:
    class Down:
        async def insert(self, *_: Any) -> None:
            raise ConnectionError("database down")

    shell = response_shell(ResponsesRequest(input="x"), "resp_1", MODEL)
    storing = _Storing(Down(), "key", [])  # type: ignore[arg-type]
    assert asyncio.run(storing.save(shell)) is False


def test_a_key_without_the_model_is_refused(server: RunningServer, admin: Admin) -> None:
    limited = sdk(server, admin.key(models=["some-other-model"]))
    with pytest.raises(openai.PermissionDeniedError) as caught:
        limited.responses.create(model=MODEL, input="Hi", max_output_tokens=2)
    assert caught.value.status_code == 403
    assert caught.value.body["code"] == "model_not_allowed"  # type: ignore[index]
    assert caught.value.body["param"] == "model"  # type: ignore[index]


def test_one_ledger_row_per_answered_request(server: RunningServer, admin: Admin) -> None:
    key = admin.key()
    counted = sdk(server, key)
    made = counted.responses.create(model=MODEL, input="Hi", max_output_tokens=2, **GREEDY)
    with counted.responses.stream(model=MODEL, input="Hi", max_output_tokens=2,
                                  **GREEDY) as stream:
        assert list(stream)[-1].type == "response.incomplete"
    counted.responses.retrieve(made.id)  # not a generation: no row
    with pytest.raises(openai.BadRequestError):  # refused before admission: no row
        counted.responses.create(model=MODEL, input="Hi", tools=[{"type": "web_search"}])
    deadline = time.monotonic() + 20
    while True:
        rows = admin.http.get("/admin/usage", params={"key_id": key["id"]}).json()["data"]
        if len(rows) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    time.sleep(1)  # a third row, had there been one, would be written by now
    rows = admin.http.get("/admin/usage", params={"key_id": key["id"]}).json()["data"]
    assert len(rows) == 2
    assert {r["endpoint"] for r in rows} == {"responses"}
    assert sorted(r["stream"] for r in rows) == [False, True]
    assert all(r["status"] == 200 and r["output_tokens"] == 2 for r in rows)


def test_schema_declares_400_not_422(server: RunningServer) -> None:
    schema = httpx.get(server.base + "/openapi.json", timeout=30).json()
    post = schema["paths"]["/v1/responses"]["post"]["responses"]
    assert {"200", "400", "401", "403", "404", "429"} <= set(post)
    assert "422" not in post
    assert "/v1/responses/{response_id}/input_items" in schema["paths"]


def test_agents_sdk_runs_an_agent_with_a_function_tool(server: RunningServer,
                                                       admin: Admin) -> None:
    calls: list[str] = []

    # offered until it has been called, so that the next turn answers in words
    @function_tool(is_enabled=lambda _context, _agent: not calls)
    def get_weather(city: str) -> str:
        """Get the weather of a city."""
        calls.append(city)
        return f"It is sunny in {city}."

    async def run() -> tuple[Any, Any]:
        client = openai.AsyncOpenAI(base_url=server.v1, api_key=admin.key()["key"],
                                    max_retries=0, timeout=120)
        set_tracing_disabled(True)
        set_default_openai_client(client, use_for_tracing=False)
        agent = Agent(name="weather", instructions="Answer with the weather.",
                      tools=[get_weather],
                      model=OpenAIResponsesModel(model=MODEL, openai_client=client),
                      model_settings=ModelSettings(tool_choice="required", temperature=0,
                                                   max_tokens=64))
        whole = await Runner.run(agent, "What is the weather in Paris?", max_turns=4)
        calls.clear()
        streamed = Runner.run_streamed(agent, "What is the weather in Rome?", max_turns=4)
        async for _ in streamed.stream_events():
            pass
        return whole, streamed

    whole, streamed = asyncio.run(run())
    assert calls == ["Rome"]
    for result in (whole, streamed):
        kinds = [type(item).__name__ for item in result.new_items]
        assert kinds == ["ToolCallItem", "ToolCallOutputItem", "MessageOutputItem"]
        assert isinstance(result.final_output, str) and result.final_output
    assert "Paris" in whole.new_items[1].output
