"""The repositories on both databases: migrations, key rows, ledger inserts, filters, spend and
grouped summaries give the same answers on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from switchboard.persistence import Database, database_url
from switchboard.persistence.keys import KeyRepository
from switchboard.persistence.usage import UsageFilter, UsageRepository

Scenario = Callable[[Database], Coroutine[Any, Any, None]]


@pytest.fixture(params=["sqlite", "postgresql"])
def run_on(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Scenario], None]:
    if request.param == "sqlite":
        url = database_url(None, tmp_path / "data")
    else:  # a database of its own on the session's server
        server = request.getfixturevalue("postgres_url")
        name = f"t_{uuid.uuid4().hex}"

        async def create() -> None:
            conn = await asyncpg.connect(server.replace("postgresql+asyncpg", "postgresql"))
            await conn.execute(f"CREATE DATABASE {name}")
            await conn.close()
        asyncio.run(create())
        url = server.rsplit("/", 1)[0] + "/" + name

    def run(scenario: Scenario) -> None:
        async def go() -> None:
            db = Database(url)
            await db.open()
            await db.open()  # migrating twice is a no-op
            try:
                await scenario(db)
            finally:
                await db.close()
        asyncio.run(go())
    return run


def test_database_urls(tmp_path: Path) -> None:
    assert database_url(None, tmp_path) == f"sqlite+aiosqlite:///{tmp_path}/switchboard.db"
    assert database_url("postgresql://u:p@h/db", tmp_path) == "postgresql+asyncpg://u:p@h/db"
    assert database_url("sqlite:///x.db", tmp_path) == "sqlite+aiosqlite:///x.db"
    assert Database("postgresql+asyncpg://u:secret@h/db").describe() == (
        "postgresql+asyncpg://u:***@h/db")


def _row(key: str, model: str, when: datetime, cost: float, status: int = 200) -> dict:
    return {"request_id": "r", "created_at": when, "day": when.isoformat()[:10], "key_id": key,
            "session_id": "s" if key == "a" else None, "endpoint": "chat.completions",
            "model": model, "deployment": "d", "provider": "local", "stream": False,
            "status": status, "error": None if status == 200 else "refused",
            "input_tokens": 10, "output_tokens": 5, "cached_tokens": 0, "cost_usd": cost,
            "latency_s": 0.5, "ttft_s": 0.1, "metrics": {"cost_usd": cost},
            "parameters": {"temperature": 0.5}, "content": None}


def test_ledger_reads(run_on: Callable[[Scenario], None]) -> None:
    async def scenario(db: Database) -> None:
        usage = UsageRepository(db)
        day1 = datetime(2026, 11, 1, 12, tzinfo=UTC)
        day2 = day1 + timedelta(days=1)
        await usage.insert_many([
            _row("a", "m1", day1, 1.0), _row("a", "m2", day1, 2.0),
            _row("a", "m1", day2, 4.0), _row("b", "m1", day2, 8.0, status=429),
        ])
        assert await usage.spend("a", None) == pytest.approx(7.0)
        assert await usage.spend("a", day2) == pytest.approx(4.0)
        records = await usage.records(UsageFilter(key_id="a"))
        assert [r["cost_usd"] for r in records] == [4.0, 2.0, 1.0]  # newest first
        assert records[0]["metrics"] == {"cost_usd": 4.0}
        assert len(await usage.records(UsageFilter(session_id="s"), limit=2)) == 2
        window = UsageFilter(start=day1 + timedelta(hours=1), end=day2 + timedelta(hours=1))
        assert len(await usage.records(window)) == 2
        by_model = await usage.summary(UsageFilter(), ["model"])
        assert [(r["model"], r["requests"], r["errors"], r["cost_usd"]) for r in by_model] == [
            ("m1", 3, 1, 13.0), ("m2", 1, 0, 2.0)]
        by_key_day = await usage.summary(UsageFilter(), ["key", "day"])
        assert [(r["key"], r["day"], r["input_tokens"]) for r in by_key_day] == [
            ("a", "2026-11-01", 20), ("a", "2026-11-02", 10), ("b", "2026-11-02", 10)]
        assert by_key_day[0]["mean_latency_s"] == pytest.approx(0.5)
    run_on(scenario)


def test_key_rows(run_on: Callable[[Scenario], None]) -> None:
    async def scenario(db: Database) -> None:
        keys = KeyRepository(db)
        now = datetime.now(UTC)
        await keys.insert({"id": "key_1", "name": "one", "prefix": "sk-sb-AAAAAAAA",
                           "secret_hash": "0" * 64, "models": ["m1"], "rpm": 5,
                           "model_limits": {"m1": {"rpm": 1, "tpm": None}}, "created_at": now})
        row = await keys.by_prefix("sk-sb-AAAAAAAA")
        assert row is not None and row["models"] == ["m1"] and row["rpm"] == 5
        assert row["model_limits"] == {"m1": {"rpm": 1, "tpm": None}}
        assert await keys.count_active() == 1
        changed = await keys.update("key_1", {"rpm": None, "tpm": 100})
        assert changed is not None and changed["rpm"] is None and changed["tpm"] == 100
        assert await keys.update("key_nope", {"rpm": 1}) is None
        await keys.revoke("key_1", now)
        assert await keys.count_active() == 0
        assert await keys.list() == [] and len(await keys.list(include_revoked=True)) == 1
    run_on(scenario)
