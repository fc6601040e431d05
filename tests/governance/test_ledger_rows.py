"""Ledger rows no database takes as they are (issue 21): a row whose logged content is nested too
deep for the JSON encoder used to fail its batch on every retry, so that no row after it was
written. Now it is stored cleaned, or set aside, and never holds back the rows after it; on SQLite
and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from switchboard.governance.ledger import UsageLedger
from switchboard.persistence import Database, database_url
from switchboard.persistence.usage import MAX_JSON_DEPTH, UsageFilter, UsageRepository
from tests.services import create_database


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return database_url(None, tmp_path / "data")
    return create_database(request.getfixturevalue("postgres_url"))


def _row(request_id: str, content: Any = None, **extra: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "request_id": request_id, "created_at": now, "day": now.isoformat()[:10],
        "key_id": "key_rows", "session_id": None, "endpoint": "chat.completions",
        "model": "m", "deployment": "d", "provider": "local", "stream": False, "status": 200,
        "error": None, "input_tokens": 3, "output_tokens": 4, "cached_tokens": 0,
        "cost_usd": 0.5, "latency_s": 0.1, "ttft_s": 0.05, "metrics": {"total_tokens": 7},
        "parameters": {"temperature": 0.0}, "content": content, **extra,
    }


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"deeper": value}
    return value


def _run(url: str, scenario: Callable[[UsageRepository], Any]) -> None:
    async def go() -> None:
        db = Database(url)
        await db.open()
        try:
            await scenario(UsageRepository(db))
        finally:
            await db.close()
    asyncio.run(go())


def test_a_row_nested_too_deep_is_stored_cut_and_never_blocks_the_next(url: str) -> None:
    async def scenario(repo: UsageRepository) -> None:
        ledger = UsageLedger(repo, interval_s=0.05)
        ledger.start()
        ledger.record(_row("deep", {"messages": [{"role": "user", "extra": _nested(300)}]}))
        ledger.record(_row("after", {"messages": [{"role": "user", "content": "hi"}]}))
        await asyncio.wait_for(ledger.flush(), 30)
        assert ledger.pending == 0
        ledger.record(_row("later"))
        await ledger.close()
        rows = await repo.records(UsageFilter(key_id="key_rows"), newest_first=False)
        assert [r["request_id"] for r in rows] == ["deep", "after", "later"]
        assert sum(r["cost_usd"] for r in rows) == pytest.approx(1.5)
        deep = rows[0]["content"]["messages"][0]["extra"]
        for _ in range(MAX_JSON_DEPTH + 1):
            if not isinstance(deep, dict):
                break
            deep = deep["deeper"]
        assert isinstance(deep, str) and "nested deeper" in deep
        assert rows[1]["content"] == {"messages": [{"role": "user", "content": "hi"}]}
        summary = await repo.summary(UsageFilter(key_id="key_rows"), ["key"])
        assert summary[0]["requests"] == 3
    _run(url, scenario)


def test_a_row_refused_even_cleaned_is_stored_without_its_json(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last resort: its tokens and cost are kept, its content is not, and the rows around it
    are stored whole."""
    async def scenario(repo: UsageRepository) -> None:
        insert = repo._insert

        async def refusing(rows: list[dict[str, Any]]) -> None:
            if any("refused" in (row.get("content") or {}) for row in rows):
                raise ValueError("the database refuses this value")
            await insert(rows)

        monkeypatch.setattr(repo, "_insert", refusing)
        await repo.insert_many([_row("before", {"y": 1}), _row("bad", {"refused": 1}),
                                _row("after", {"y": 2})])
        rows = await repo.records(UsageFilter(key_id="key_rows"), newest_first=False)
        assert [r["request_id"] for r in rows] == ["before", "bad", "after"]
        assert rows[1]["content"] is None and rows[1]["cost_usd"] == 0.5
        assert rows[1]["input_tokens"] == 3 and rows[1]["output_tokens"] == 4
        assert [rows[0]["content"], rows[2]["content"]] == [{"y": 1}, {"y": 2}]
    _run(url, scenario)
