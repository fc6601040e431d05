"""The repositories on every database: migrations, key rows, ledger inserts, filters, spend,
grouped summaries and document buckets give the same answers on SQLite and on PostgreSQL, with
pgvector (vectors stored there) and without."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from switchboard.persistence import Database, database_url
from switchboard.persistence.buckets import BucketExists, BucketRepository
from switchboard.persistence.keys import KeyRepository
from switchboard.persistence.usage import UsageFilter, UsageRepository
from switchboard.persistence.vectors import chunk_vectors
from tests.services import create_database

Scenario = Callable[[Database], Coroutine[Any, Any, None]]


@pytest.fixture(params=["sqlite", "postgresql", "pgvector"])
def run_on(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Scenario], None]:
    """SQLite; PostgreSQL without pgvector (Debian's); PostgreSQL with it (vectors stored there)."""
    if request.param == "sqlite":
        url = database_url(None, tmp_path / "data")
    else:  # a database of its own on the session's server
        server = request.getfixturevalue(
            "postgres_url" if request.param == "postgresql" else "pgvector_url")
        url = create_database(server)

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


def test_ledger_rows_keep_every_value(run_on: Callable[[Scenario], None]) -> None:
    """What goes in comes back: times to the microsecond, booleans, NULLs, exact floats, JSON
    with quotes and non-ASCII text (SQLite receives a batch as one JSON array)."""
    async def scenario(db: Database) -> None:
        usage = UsageRepository(db)
        when = datetime(2026, 11, 3, 9, 41, 7, 123456, tzinfo=UTC)
        full = {**_row("k", "m", when, 0.1 + 0.2), "request_id": 'req "1" é',
                "stream": True, "error": "it's \\ \"quoted\"\n日本", "ttft_s": None,
                "latency_s": 1e-7, "input_tokens": 123_456, "session_id": None,
                "content": {"messages": [{"role": "user", "content": "héllo \u0000 \"x\""}],
                            "output": None}}
        empty = {**_row("k", "m", when + timedelta(seconds=1), 0.0), "metrics": None,
                 "parameters": None, "stream": False}
        await usage.insert_many([full, empty])
        got_empty, got_full = await usage.records(UsageFilter(key_id="k"))
        for key in ("request_id", "stream", "error", "ttft_s", "latency_s", "input_tokens",
                    "session_id", "content", "cost_usd", "metrics", "parameters"):
            assert got_full[key] == full[key], key
        assert got_full["created_at"].replace(tzinfo=UTC) == when
        assert got_empty["stream"] is False and got_empty["metrics"] is None
        assert got_empty["parameters"] is None
    run_on(scenario)


def test_a_row_no_database_takes_as_is_does_not_hold_the_ledger_back(
    run_on: Callable[[Scenario], None],
) -> None:
    """Client text or numbers that a driver or database refuses (a 70-bit seed, a lone
    surrogate, a NUL character, a session id longer than its column) are stored cleaned, and
    the rest of the batch with them."""
    async def scenario(db: Database) -> None:
        usage = UsageRepository(db)
        when = datetime(2026, 11, 4, tzinfo=UTC)
        odd = {**_row("k", "m", when, 1.0), "parameters": {"seed": 2**70},
               "error": "bad \ud800 model\x00name", "session_id": "s" * 300}
        fine = _row("k", "m", when + timedelta(seconds=1), 2.0)
        await usage.insert_many([odd, fine])
        got_fine, got_odd = await usage.records(UsageFilter(key_id="k"))
        assert got_fine["parameters"] == fine["parameters"] and got_fine["cost_usd"] == 2.0
        assert got_odd["parameters"] == {"seed": str(2**70)}
        assert got_odd["error"] == "bad ? model\ufffdname"
        assert got_odd["session_id"] == "s" * 200
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


async def stored_vectors(db: Database, bucket_id: str) -> list[tuple[int, bytes]]:
    """A bucket's vectors (as float32 bytes) from wherever this database keeps them."""
    if not db.pgvector:
        return await BucketRepository(db).vectors(bucket_id)
    query = (select(chunk_vectors.c.chunk_id, chunk_vectors.c.embedding)
             .where(chunk_vectors.c.bucket_id == bucket_id).order_by(chunk_vectors.c.chunk_id))
    async with db.engine.connect() as conn:
        return [(r.chunk_id, np.asarray(r.embedding, dtype="<f4").tobytes())
                for r in await conn.execute(query)]


def test_bucket_rows(run_on: Callable[[Scenario], None]) -> None:
    async def scenario(db: Database) -> None:
        repo = BucketRepository(db)
        now = datetime.now(UTC)
        await repo.create_bucket({"id": "b1", "owner": "key_a", "name": "docs", "version": 0,
                                  "created_at": now})
        with pytest.raises(BucketExists):
            await repo.create_bucket({"id": "b2", "owner": "key_a", "name": "docs",
                                      "version": 0, "created_at": now})
        await repo.create_bucket({"id": "b3", "owner": "key_b", "name": "docs", "version": 0,
                                  "created_at": now})  # same name, another owner
        assert (await repo.bucket("key_b", "docs"))["id"] == "b3"

        def doc(doc_id: str, checksum: str) -> dict:
            return {"id": doc_id, "bucket_id": "b1", "filename": "a.txt",
                    "content_type": "text/plain", "checksum": checksum, "size": 3, "text": "abc",
                    "chunk_size": 10, "chunk_overlap": 2, "status": "pending", "chunks": 0,
                    "created_at": now}

        def task(task_id: str) -> dict:
            return {"id": task_id, "bucket_id": "b1", "owner": "key_a", "status": "queued",
                    "reason": None, "created_at": now, "finished_at": None}

        assert await repo.put_documents("b1", [doc("d1", "c1")], task("t1")) == ["d1"]
        assert await repo.put_documents("b1", [doc("d2", "c1")], task("t2")) == []  # unchanged
        vector = np.ones(384, dtype="<f4").tobytes()
        chunk = {"bucket_id": "b1", "document_id": "d1", "position": 0, "start_char": 0,
                 "end_char": 3, "text": "abc", "embedding": vector}
        assert await repo.replace_chunks("d1", "b1", [chunk, {**chunk, "position": 1}])
        assert (await repo.versions(["b1"]))["b1"] == 1
        [(chunk_id, blob), _] = await stored_vectors(db, "b1")
        assert blob == vector
        assert (await repo.chunks([chunk_id]))[chunk_id]["filename"] == "a.txt"
        listed = {b["id"]: b for b in await repo.list_buckets("key_a")}
        assert listed["b1"]["documents"] == 1 and listed["b1"]["chunks"] == 2
        # a changed file replaces the old document and its chunks
        assert await repo.put_documents("b1", [doc("d3", "c2")], task("t3")) == ["d3"]
        assert await stored_vectors(db, "b1") == [] and (await repo.versions(["b1"]))["b1"] == 2
        assert not await repo.replace_chunks("d1", "b1", [chunk])  # d1 is gone
        assert [t["id"] for t in await repo.unfinished_tasks()] == ["t1", "t2", "t3"]
        await repo.set_task("t1", "success")
        assert (await repo.task("t1"))["finished_at"] is not None
        assert await repo.delete_document("b1", "a.txt")
        assert not await repo.delete_document("b1", "a.txt")
        await repo.delete_bucket("b1")
        assert await repo.bucket(None, "docs") is not None  # key_b's is still there
        assert [b["id"] for b in await repo.list_buckets(None)] == ["b3"]
    run_on(scenario)
