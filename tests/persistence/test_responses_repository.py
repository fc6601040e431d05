"""Stored responses on SQLite and PostgreSQL: written, read back whole, scoped to their owner
(another owner's id reads and deletes as if it did not exist), deleted once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from switchboard.persistence import Database, database_url
from switchboard.persistence.responses import ResponseRepository
from tests.services import create_database

Scenario = Callable[[Database], Coroutine[Any, Any, None]]


@pytest.fixture(params=["sqlite", "postgresql"])
def run_on(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Scenario], None]:
    if request.param == "sqlite":
        url = database_url(None, tmp_path / "data")
    else:
        url = create_database(request.getfixturevalue("postgres_url"))

    def run(scenario: Scenario) -> None:
        async def go() -> None:
            db = Database(url)
            await db.open()
            try:
                await scenario(db)
            finally:
                await db.close()
        asyncio.run(go())
    return run


def _response(response_id: str, text: str) -> dict[str, Any]:
    return {"id": response_id, "object": "response", "created_at": 1_780_000_000,
            "model": "m", "status": "completed", "metadata": {"k": "é"},
            "output": [{"id": "msg_out", "type": "message", "role": "assistant",
                        "status": "completed", "content": [
                            {"type": "output_text", "text": text, "annotations": []}]}]}


def test_responses_are_stored_per_owner(run_on: Callable[[Scenario], None]) -> None:
    async def scenario(db: Database) -> None:
        repo = ResponseRepository(db)
        items = [{"id": "msg_in", "type": "message", "role": "user",
                  "content": [{"type": "input_text", "text": "hi " * 2000}]}]
        await repo.insert("key-a", _response("resp_a", "hello"), items)
        await repo.insert("*", _response("resp_open", "shared"), [])
        stored = await repo.get("key-a", "resp_a")
        assert stored is not None
        assert stored.response == _response("resp_a", "hello") and stored.input_items == items
        assert [i["id"] for i in stored.conversation] == ["msg_in", "msg_out"]
        assert await repo.get("key-b", "resp_a") is None  # another key's: as if absent
        assert await repo.get("key-a", "resp_open") is None
        assert await repo.get("key-a", "resp_missing") is None
        assert not await repo.delete("key-b", "resp_a")
        assert await repo.get("key-a", "resp_a") is not None  # a refused delete changes nothing
        assert await repo.delete("key-a", "resp_a")
        assert await repo.get("key-a", "resp_a") is None
        assert not await repo.delete("key-a", "resp_a")
        assert (await repo.get("*", "resp_open")) is not None
    run_on(scenario)
