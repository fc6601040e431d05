"""Agent frameworks against a running server, with their defaults: LangChain's structured output
(function calling and JSON Schema, 20 seeds each at its default temperature), instructor's
``Mode.TOOLS``, a pydantic-ai ``Agent`` with a pydantic ``output_type`` over chat completions, and
the OpenAI Agents SDK calling a ``@function_tool``. Then 500 seeded tool-call requests mixing
named, ``required`` and ``auto`` tool_choice, streamed and not: no 5xx, and every call of a choice
that finished with ``tool_calls`` has arguments that validate against its function's schema.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jsonschema
import pytest
from pydantic import BaseModel, Field

from tests.conftest import API_KEY, RunningServer, start_server, stop_server

MODEL = "smollm2-135m-instruct"
SEEDS = range(20)


class City(BaseModel):
    name: str = Field(description="The city's name")
    country: str
    population: int


@pytest.fixture(scope="module")
def frameworks_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(tmp_path_factory.mktemp("frameworks"), "--api-key", API_KEY,
                       "--weights", "original")
    yield srv
    stop_server(srv)


def over_seeds(ask: Any) -> list[Any]:
    """``ask(seed)`` for every seed, eight at a time (the server batches them)."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(ask, SEEDS))


@pytest.mark.timeout(900)
@pytest.mark.parametrize("method", [
    "function_calling", "json_schema",
])
def test_langchain_structured_output_over_20_seeds(
    frameworks_server: RunningServer, method: str
) -> None:
    from langchain_openai import ChatOpenAI

    def ask(seed: int) -> Any:
        llm = ChatOpenAI(model=MODEL, base_url=frameworks_server.v1, api_key=API_KEY,
                         max_retries=0, timeout=300, model_kwargs={"seed": seed})
        return llm.with_structured_output(City, method=method).invoke("Tell me about Paris.")

    assert all(isinstance(city, City) for city in over_seeds(ask))


def test_instructor_tools_mode(frameworks_server: RunningServer) -> None:
    import instructor
    from openai import OpenAI

    client = instructor.from_openai(
        OpenAI(base_url=frameworks_server.v1, api_key=API_KEY, max_retries=0, timeout=300),
        mode=instructor.Mode.TOOLS,
    )
    city = client.chat.completions.create(
        model=MODEL, response_model=City, max_retries=0,
        messages=[{"role": "user", "content": "Tell me about Paris."}],
    )
    assert isinstance(city, City)


def test_pydantic_ai_agent_with_an_output_type(frameworks_server: RunningServer) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel(
        MODEL, provider=OpenAIProvider(base_url=frameworks_server.v1, api_key=API_KEY))
    result = Agent(model, output_type=City).run_sync("Tell me about Paris.")
    assert isinstance(result.output, City)


def test_openai_agents_sdk_calls_a_function_tool(frameworks_server: RunningServer) -> None:
    from agents import (
        Agent,
        ModelSettings,
        OpenAIChatCompletionsModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )
    from openai import AsyncOpenAI

    set_tracing_disabled(True)
    asked: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        asked.append(city)
        return f"Sunny in {city}"

    client = AsyncOpenAI(base_url=frameworks_server.v1, api_key=API_KEY, max_retries=0)
    agent = Agent(
        name="weather", instructions="Answer with the tools.", tools=[get_weather],
        model=OpenAIChatCompletionsModel(model=MODEL, openai_client=client),
        model_settings=ModelSettings(tool_choice="required"),
        tool_use_behavior="stop_on_first_tool",
    )
    result = Runner.run_sync(agent, "What's the weather in Paris?", max_turns=2)
    assert len(asked) == 1 and isinstance(asked[0], str)
    assert result.final_output == f"Sunny in {asked[0]}"


# --- 500 seeded tool-call requests ----------------------------------------------------------
LOOKUP = {"type": "object", "properties": {"id": {"type": "integer", "minimum": 0,
                                                  "maximum": 999},
                                           "kind": {"enum": ["user", "team"]}},
          "required": ["id", "kind"], "additionalProperties": False}
NOTE = {"type": "object", "properties": {"text": {"type": "string", "maxLength": 12}},
        "required": ["text"]}
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": LOOKUP}},
         {"type": "function", "function": {"name": "note", "parameters": NOTE}}]
SCHEMAS = {"lookup": LOOKUP, "note": NOTE}
CHOICES: list[Any] = ["auto", "required", {"type": "function", "function": {"name": "lookup"}},
                      {"type": "function", "function": {"name": "note"}}]


def body(seed: int) -> dict[str, Any]:
    pick = random.Random(seed)
    return {
        "model": MODEL, "seed": seed, "max_tokens": pick.choice([8, 24, 48]),
        "temperature": pick.choice([0.0, 0.7, 1.0]), "stream": pick.random() < 0.5,
        "tools": TOOLS, "tool_choice": pick.choice(CHOICES),
        "parallel_tool_calls": pick.random() < 0.7,
        "messages": [{"role": "user", "content": f"Look up user {seed} or leave a note."}],
    }


async def ask(client: httpx.AsyncClient, seed: int) -> tuple[int, dict[str, Any]]:
    """(status, the choice as a whole reply has it; streamed deltas put together)."""
    request = body(seed)
    if not request["stream"]:
        reply = await client.post("/chat/completions", json=request)
        choice = reply.json()["choices"][0] if reply.status_code == 200 else {}
        return reply.status_code, choice
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    async with client.stream("POST", "/chat/completions", json=request) as reply:
        if reply.status_code != 200:
            await reply.aread()
            return reply.status_code, {}
        async for line in reply.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            assert "error" not in event, event
            for choice in event["choices"]:
                finish = choice.get("finish_reason") or finish
                for delta in choice["delta"].get("tool_calls") or []:
                    call = calls.setdefault(delta["index"], {"function": {"arguments": ""}})
                    if "function" in delta and "name" in delta["function"]:
                        call["function"]["name"] = delta["function"]["name"]
                    call["function"]["arguments"] += delta["function"].get("arguments", "")
    message = {"tool_calls": [calls[i] for i in sorted(calls)]}
    return 200, {"finish_reason": finish, "message": message}


N = 500


async def ask_all(base: str) -> list[tuple[int, dict[str, Any]]]:
    gate = asyncio.Semaphore(8)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=300) as client:
        async def one(seed: int) -> tuple[int, dict[str, Any]]:
            async with gate:
                return await ask(client, seed)
        return await asyncio.gather(*(one(seed) for seed in range(N)))


@pytest.mark.timeout(1800)
def test_500_seeded_tool_call_requests(frameworks_server: RunningServer) -> None:
    results = asyncio.run(ask_all(frameworks_server.v1))
    statuses = [status for status, _ in results]
    assert all(status < 500 for status in statuses), sorted(set(statuses))
    assert statuses.count(200) == 500
    finished_with_calls = 0
    for seed, (_, choice) in enumerate(results):
        if choice["finish_reason"] != "tool_calls":
            continue
        finished_with_calls += 1
        calls = choice["message"]["tool_calls"]
        assert calls, seed
        for call in calls:
            name = call["function"]["name"]
            jsonschema.validate(json.loads(call["function"]["arguments"]), SCHEMAS[name])
            named = body(seed)["tool_choice"]
            if isinstance(named, dict):
                assert name == named["function"]["name"]
    assert finished_with_calls >= 100  # required and named choices with room to finish
