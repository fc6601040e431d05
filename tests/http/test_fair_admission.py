"""Keys take turns for the engine's sequence slots: a key that queues several requests first
does not make another key's request wait behind all of them (one slot here, so the order in
which the requests finish is the order in which they were admitted)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import RunningServer, start_server, stop_server

FLOOD_KEY = "sk-fair-flood-0123456789"
OTHER_KEY = "sk-fair-other-0123456789"
MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(tmp_path_factory.mktemp("fair"), "--weights", "original",
                       env={"SWITCHBOARD_API_KEYS": f"{FLOOD_KEY},{OTHER_KEY}",
                            "SWITCHBOARD_MAX_SEQUENCES": "1"})
    yield srv
    stop_server(srv)


def waiting(server: RunningServer) -> int:
    models = httpx.get(server.base + "/health", timeout=10).json()["models"]
    return models[MODEL]["waiting"]


def test_another_keys_request_is_admitted_next(one_slot: RunningServer) -> None:
    finished: list[str] = []

    async def ask(client: httpx.AsyncClient, key: str, name: str) -> None:
        r = await client.post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                              json={"model": MODEL, "max_tokens": 64, "ignore_eos": True,
                                    "temperature": 0,
                                    "messages": [{"role": "user", "content": f"Count: {name}"}]})
        assert r.status_code == 200, r.text
        finished.append(name)

    async def go() -> None:
        async with httpx.AsyncClient(base_url=one_slot.base, timeout=120) as client:
            flood = [asyncio.create_task(ask(client, FLOOD_KEY, f"flood {i}")) for i in range(3)]
            deadline = time.monotonic() + 30
            while await asyncio.to_thread(waiting, one_slot) < 2:  # one runs, two queue
                assert time.monotonic() < deadline, "the flood's requests never queued"
                await asyncio.sleep(0.02)
            other = asyncio.create_task(ask(client, OTHER_KEY, "other"))
            await asyncio.gather(*flood, other)

    asyncio.run(go())
    assert finished[1] == "other", finished  # right after the request that was running
