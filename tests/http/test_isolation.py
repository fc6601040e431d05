"""One client cannot break the server for everyone (issue 21).

A request whose numbers used to crash the engine step (beam search with ``length_penalty`` ±1000:
"Numerical result out of range", "float division by zero") ended every running and queued
sequence of every key. Now such numbers are refused with a 4xx in OpenAI's format, and the
streams of other keys running at that moment finish normally; extreme values inside the ranges
run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests.conftest import RunningServer, start_server, stop_server, wait_ready

VICTIM_KEY = "sk-isolation-victim-0123456789"
POISONER_KEY = "sk-isolation-poisoner-0123456789"
STREAMS = 15  # with the poisoned one: 16 concurrent streams
MAX_TOKENS = 16
MAX_SEQUENCES = 18  # room for the 15 streams and a 2-beam search at once
TIMEOUT = httpx.Timeout(600.0)  # the CPU may be shared with other test runs
pytestmark = pytest.mark.timeout(900)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(
        tmp_path_factory.mktemp("isolation"), "--weights", "original",
        env={"SWITCHBOARD_API_KEYS": f"{VICTIM_KEY},{POISONER_KEY}",
             "SWITCHBOARD_MAX_SEQUENCES": str(MAX_SEQUENCES)},
        wait=False,
    )
    try:
        wait_ready(srv, timeout=300)
    except BaseException:
        stop_server(srv)
        raise
    yield srv
    stop_server(srv)


@dataclass
class StreamResult:
    text: str = ""
    finish_reason: str | None = None
    completion_tokens: int | None = None
    errors: list[dict] = field(default_factory=list)
    done: bool = False


async def victim_stream(
    client: httpx.AsyncClient, url: str, i: int, started: asyncio.Queue[int]
) -> StreamResult:
    body = {
        "messages": [{"role": "user", "content": f"Tell story number {i} about a lighthouse."}],
        "max_tokens": MAX_TOKENS, "ignore_eos": True, "stream": True, "seed": i,
        "stream_options": {"include_usage": True},
    }
    result = StreamResult()
    async with client.stream("POST", url, json=body, headers=auth(VICTIM_KEY)) as r:
        assert r.status_code == 200, await r.aread()
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                result.done = True
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                result.errors.append(chunk["error"])
                continue
            for choice in chunk["choices"]:
                content = choice["delta"].get("content")
                if content:
                    if not result.text:
                        started.put_nowait(i)
                    result.text += content
                result.finish_reason = choice.get("finish_reason") or result.finish_reason
            if chunk.get("usage"):
                result.completion_tokens = chunk["usage"]["completion_tokens"]
    return result


POISONS = [
    {"use_beam_search": True, "best_of": 2, "length_penalty": 1000},
    {"use_beam_search": True, "best_of": 2, "length_penalty": -1000},
    {"use_beam_search": True, "best_of": 2, "length_penalty": 1000, "stream": True},
]


def test_a_poisoned_request_among_16_streams_fails_alone(isolated: RunningServer) -> None:
    url = isolated.v1 + "/chat/completions"

    async def scenario() -> tuple[list[StreamResult], list[httpx.Response]]:
        limits = httpx.Limits(max_connections=STREAMS + len(POISONS) + 2)
        async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as client:
            started: asyncio.Queue[int] = asyncio.Queue()
            victims = [
                asyncio.create_task(victim_stream(client, url, i, started))
                for i in range(STREAMS)
            ]
            for _ in range(STREAMS):  # every victim is generating when the poison arrives
                await asyncio.wait_for(started.get(), TIMEOUT.read)
            poisoned = []
            for extra in POISONS:
                body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8,
                        **extra}
                poisoned.append(await client.post(url, json=body, headers=auth(POISONER_KEY)))
            return list(await asyncio.gather(*victims)), poisoned

    results, poisoned = asyncio.run(scenario())
    for r in poisoned:
        assert 400 <= r.status_code < 500, r.text
        error = r.json()["error"]
        assert error["param"] == "length_penalty"
        assert error["type"] == "invalid_request_error"
        assert "length_penalty" in error["message"]
    for result in results:
        assert result.errors == []
        assert result.done
        assert result.finish_reason == "length"
        assert result.completion_tokens == MAX_TOKENS
        assert result.text


@pytest.mark.parametrize("length_penalty", [10.0, -10.0])
def test_extreme_allowed_beam_search_runs(isolated: RunningServer, length_penalty: float) -> None:
    body = {
        "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 6,
        "use_beam_search": True, "best_of": MAX_SEQUENCES, "n": 4,
        "length_penalty": length_penalty, "early_stopping": "never",
    }
    r = httpx.post(isolated.v1 + "/chat/completions", json=body, headers=auth(VICTIM_KEY),
                   timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    choices = r.json()["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2, 3]
    assert all(c["finish_reason"] in ("stop", "length") for c in choices)


@pytest.mark.parametrize("sampling", [
    {"temperature": 1e-300, "repetition_penalty": 0.01, "frequency_penalty": 2},
    {"temperature": 2.0, "top_p": 0.0, "top_k": 2**31 - 1, "min_p": 1.0,
     "repetition_penalty": 10.0, "presence_penalty": -2},
    {"temperature": 2.0, "top_p": 1e-300, "repetition_penalty": 0.01, "frequency_penalty": -2},
], ids=["greedy", "narrowest", "widest"])
def test_extreme_allowed_sampling_values_run(isolated: RunningServer, sampling: dict) -> None:
    body = {
        "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 6,
        "logit_bias": {"0": 100, "1": -100}, "logprobs": True, "top_logprobs": 20,
        "n": 2, "best_of": 3, "min_tokens": 6, "seed": 2**64 - 1, **sampling,
    }
    r = httpx.post(isolated.v1 + "/chat/completions", json=body, headers=auth(VICTIM_KEY),
                   timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    for choice in r.json()["choices"]:
        assert choice["finish_reason"] == "length"
        assert len(choice["logprobs"]["content"]) == 6
        assert all(len(t["top_logprobs"]) == 20 for t in choice["logprobs"]["content"])


@pytest.mark.parametrize(
    "extra,param",
    [
        ({"use_beam_search": True, "best_of": 2, "length_penalty": 10.5}, "length_penalty"),
        ({"repetition_penalty": 0.001}, "repetition_penalty"),
        ({"top_k": 2**31}, "top_k"),
        ({"max_tokens": 2**31}, "max_tokens"),
        ({"logit_bias": {"99999999999": 1}}, "logit_bias"),
        ({"logit_bias": {"5": 1e308}}, "logit_bias"),
        ({"stop_token_ids": [-1]}, "stop_token_ids"),
        ({"temperature": 1e400}, "temperature"),
    ],
)
def test_numbers_out_of_range_are_4xx_naming_the_field(
    isolated: RunningServer, extra: dict, param: str
) -> None:
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, **extra}
    content = json.dumps(body).replace("Infinity", "1e400")  # as a client would write it
    r = httpx.post(isolated.v1 + "/chat/completions", content=content, timeout=TIMEOUT,
                   headers={**auth(VICTIM_KEY), "content-type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert (error["param"] or "").startswith(param)
