"""Chunk vectors in pgvector: set up at open where PostgreSQL has the extension, searched there
with the same answers as the NumPy index, vectors stored before moved over, a server whose user
may not create the extension left on NumPy with its migrations intact, and the README's HNSW
index used by the planner for a large bucket only."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import numpy as np
import pytest
from sqlalchemy import func, select

from switchboard.persistence import Database, database_url
from switchboard.persistence.buckets import BucketRepository
from switchboard.persistence.tables import chunks
from switchboard.persistence.vectors import chunk_vectors, nearest_query
from switchboard.retrieval.index import VectorIndex
from tests.services import create_database

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def unit_vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, 384)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


async def store(repo: BucketRepository, bucket_id: str, vectors: np.ndarray) -> None:
    """A bucket holding one document whose chunks have these vectors (chunk text = position)."""
    await repo.create_bucket({"id": bucket_id, "owner": "*", "name": bucket_id, "version": 0,
                              "created_at": NOW})
    document_id = f"doc_{bucket_id}"
    await repo.put_documents(bucket_id, [{
        "id": document_id, "bucket_id": bucket_id, "filename": "a.txt",
        "content_type": "text/plain", "checksum": "0" * 64, "size": 1, "text": "x",
        "chunk_size": 10, "chunk_overlap": 2, "status": "pending", "chunks": 0,
        "created_at": NOW}], {"id": f"task_{bucket_id}", "bucket_id": bucket_id, "owner": "*",
                              "status": "success", "reason": None, "created_at": NOW,
                              "finished_at": NOW})
    assert await repo.replace_chunks(document_id, bucket_id, [
        {"bucket_id": bucket_id, "document_id": document_id, "position": i, "start_char": 0,
         "end_char": 1, "text": str(i), "embedding": v.astype("<f4").tobytes()}
        for i, v in enumerate(vectors)])


async def opened(url: str) -> Database:
    db = Database(url)
    await db.open()
    return db


async def by_text(repo: BucketRepository, hits: list[tuple[int, float]]) -> list[str]:
    rows = await repo.chunks([chunk_id for chunk_id, _ in hits])
    return [f"{rows[chunk_id]['bucket_id']}:{rows[chunk_id]['text']}" for chunk_id, _ in hits]


def test_where_vectors_live(tmp_path: Path, postgres_url: str, pgvector_url: str) -> None:
    urls = {"sqlite": database_url(None, tmp_path), "postgresql": create_database(postgres_url),
            "pgvector": create_database(pgvector_url)}

    async def go() -> dict[str, bool]:
        found = {}
        for name, url in urls.items():
            db = await opened(url)
            found[name] = db.pgvector
            await db.close()
        return found
    assert asyncio.run(go()) == {"sqlite": False, "postgresql": False, "pgvector": True}


def test_pgvector_search_equals_numpy(tmp_path: Path, pgvector_url: str) -> None:
    first, second = unit_vectors(300, 1), unit_vectors(200, 2)
    queries = unit_vectors(8, 3)

    async def answers(url: str) -> tuple[bool, list[list[str]], list[list[float]]]:
        db = await opened(url)
        repo = BucketRepository(db)
        await store(repo, "b1", first)
        await store(repo, "b2", second)
        index = VectorIndex(repo)
        names, distances = [], []
        for query in queries:
            for buckets, k in ((["b1"], 10), (["b1", "b2"], 7), (["b2"], 500)):
                hits = await index.search(buckets, query, k)
                names.append(await by_text(repo, hits))
                distances.append([d for _, d in hits])
        await db.close()
        return db.pgvector, names, distances

    on_numpy = asyncio.run(answers(database_url(None, tmp_path)))
    on_pgvector = asyncio.run(answers(create_database(pgvector_url)))
    assert (on_numpy[0], on_pgvector[0]) == (False, True)
    assert on_pgvector[1] == on_numpy[1]  # the same chunks, in the same order
    assert len(on_pgvector[1][2]) == 200 and all(n.startswith("b2:") for n in on_pgvector[1][2])
    for got, expected in zip(on_pgvector[2], on_numpy[2], strict=True):
        assert np.allclose(got, expected, atol=1e-5)


def test_vectors_stored_as_bytes_move_to_pgvector(
        pgvector_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = create_database(pgvector_url)
    vectors = unit_vectors(40, 4)

    async def before() -> None:  # as a server without pgvector would have stored them
        with monkeypatch.context() as patched:
            patched.setattr("switchboard.persistence.database.enable_pgvector", lambda _c: False)
            db = await opened(url)
        assert not db.pgvector
        await store(BucketRepository(db), "b1", vectors)
        await db.close()

    async def after() -> None:
        db = await opened(url)
        assert db.pgvector
        repo = BucketRepository(db)
        async with db.engine.connect() as conn:
            assert await conn.scalar(select(func.count()).select_from(chunk_vectors)) == 40
            assert await conn.scalar(select(func.count()).select_from(chunks)
                                     .where(chunks.c.embedding.is_not(None))) == 0
        for position in (0, 17, 39):
            hits = await repo.nearest(["b1"], vectors[position], 1)
            assert await by_text(repo, hits) == [f"b1:{position}"]
            assert abs(hits[0][1]) < 1e-5
        assert await repo.delete_document("b1", "a.txt")  # its vectors go with its chunks
        async with db.engine.connect() as conn:
            assert await conn.scalar(select(func.count()).select_from(chunk_vectors)) == 0
        await db.close()

    asyncio.run(before())
    asyncio.run(after())


def test_user_who_may_not_create_the_extension_stays_on_numpy(
        pgvector_url: str, caplog: pytest.LogCaptureFixture) -> None:
    admin_url = pgvector_url.replace("postgresql+asyncpg", "postgresql")

    async def go() -> None:
        conn = await asyncpg.connect(admin_url)
        await conn.execute("CREATE ROLE plain LOGIN")
        await conn.execute("CREATE DATABASE plain_db OWNER plain")
        await conn.close()
        url = pgvector_url.replace("//switchboard@", "//plain@").rsplit("/", 1)[0] + "/plain_db"
        db = await opened(url)
        assert not db.pgvector
        repo = BucketRepository(db)
        vectors = unit_vectors(5, 5)
        await store(repo, "b1", vectors)  # the migrations committed all the same
        hits = await VectorIndex(repo).search(["b1"], vectors[3], 1)
        assert await by_text(repo, hits) == ["b1:3"]
        await db.close()

    with caplog.at_level(logging.WARNING, logger="switchboard.persistence.vectors"):
        asyncio.run(go())
    assert "could not be set up" in caplog.text and "permission denied" in caplog.text


def documented_hnsw_sql() -> list[str]:
    """The statements the retrieval page's *Millions of chunks* paragraph gives operators."""
    page = (Path(__file__).parents[2] / "docs" / "retrieval.md").read_text()
    after = page[page.index("**Millions of chunks**"):]
    start = after.index("```sql") + len("```sql")
    block = after[start:after.index("```", start)]
    return [line.split("--")[0].strip().rstrip(";") for line in block.strip().splitlines()]


def test_documented_hnsw_index_is_used_for_large_buckets_only(pgvector_url: str) -> None:
    url = create_database(pgvector_url)
    vectors = unit_vectors(10_000, 6)

    async def go() -> None:
        db = await opened(url)
        repo = BucketRepository(db)
        await store(repo, "big", vectors[:9_000])
        await store(repo, "small", vectors[9_000:])
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        for statement in documented_hnsw_sql():  # CONCURRENTLY: outside a transaction
            await conn.execute(statement.replace("DATABASE switchboard",
                                                 f"DATABASE {url.rsplit('/', 1)[1]}"))
        await conn.execute("ANALYZE chunk_vectors")
        for bucket, index in (("big", "chunk_vectors_embedding_idx"),
                              ("small", "ix_chunk_vectors_bucket_id")):
            query = nearest_query([bucket], vectors[0], 5).compile(
                dialect=db.engine.dialect, compile_kwargs={"literal_binds": True})
            plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {query}"))
            assert f"Index Scan using {index}" in plan, plan
        await conn.close()
        await db.close()
        db = await opened(url)  # new connections, with the database's hnsw setting
        repo = BucketRepository(db)
        for bucket, stored, position in (("big", 0, 4_321), ("small", 9_000, 123)):
            hits = await repo.nearest([bucket], vectors[stored + position], 5)
            assert len(hits) == 5  # the iterative scan keeps looking past other buckets' rows
            assert await by_text(repo, hits[:1]) == [f"{bucket}:{position}"]
        await db.close()

    asyncio.run(go())
