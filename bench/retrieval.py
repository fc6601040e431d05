"""Retrieval: similarity-search latency over 100,000 stored chunks, and upload-to-searchable
time for a 1 MB text file, in-process (no HTTP), on SQLite or on the PostgreSQL database given
(searched with pgvector where that server has it, else with NumPy like SQLite).

    python bench/retrieval.py
    python bench/retrieval.py --database-url postgresql://USER@HOST/EMPTY_DATABASE
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import text as sql

from common import Result, bench_parser, run_benchmark
from switchboard.governance.keys import Principal
from switchboard.persistence import Database, database_url
from switchboard.persistence.buckets import BucketRepository
from switchboard.retrieval.buckets import BucketService, Upload
from switchboard.retrieval.service import EmbeddingService

CHUNKS = 100_000


async def measure(url: str | None) -> Result:
    db = Database(database_url(url, Path(tempfile.mkdtemp())))
    await db.open()
    print(f"{db.describe()}: vectors searched "
          f"{'in PostgreSQL with pgvector' if db.pgvector else 'in memory with NumPy'}")
    embeddings = EmbeddingService()
    await embeddings.load()
    service = BucketService(BucketRepository(db), embeddings)
    await service.start()
    admin = Principal(admin=True)

    # 100,000 chunks with random unit vectors, written straight to the table
    bucket = await service.create(admin, "big")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((CHUNKS, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    now = datetime.now(UTC)
    doc = {"id": "doc_big", "bucket_id": bucket["id"], "filename": "big.txt",
           "content_type": "text/plain", "checksum": "0" * 64, "size": 0, "text": "x",
           "chunk_size": 200, "chunk_overlap": 40, "status": "pending", "chunks": 0,
           "created_at": now}
    task = {"id": "task_big", "bucket_id": bucket["id"], "owner": "*", "status": "success",
            "reason": None, "created_at": now, "finished_at": now}
    await service.repo.put_documents(bucket["id"], [doc], task)
    rows = [{"bucket_id": bucket["id"], "document_id": "doc_big", "position": i,
             "start_char": 0, "end_char": 1, "text": f"chunk {i}", "embedding": v.tobytes()}
            for i, v in enumerate(vectors)]
    started = time.perf_counter()
    await service.repo.replace_chunks("doc_big", bucket["id"], rows)
    stored_s = time.perf_counter() - started
    print(f"{CHUNKS:,} chunks stored in one transaction: {stored_s:.1f} s")
    if db.pgvector:  # what autovacuum would have done by the time anyone searches
        async with db.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sql("VACUUM ANALYZE chunk_vectors"))

    started = time.perf_counter()
    await service.search(admin, ["big"], "warm the index", 5)
    first = time.perf_counter() - started
    times = []
    for i in range(50):
        started = time.perf_counter()
        await service.search(admin, ["big"], f"query number {i} about documents", 5)
        times.append(time.perf_counter() - started)
    print(f"search over {CHUNKS:,} chunks (top 5, query embedded included): "
          f"p50 {statistics.median(times) * 1000:.1f} ms, "
          f"p95 {sorted(times)[int(len(times) * 0.95)] * 1000:.1f} ms "
          f"(the first: {first * 1000:.0f} ms"
          f"{'' if db.pgvector else ', loading the vectors into memory'})")

    sentence = "Retrieval splits documents into overlapping windows of tokens and embeds each. "
    text = (sentence * (1_000_000 // len(sentence) + 1))[:1_000_000]
    started = time.perf_counter()
    task = await service.upload(admin, "megabyte", [Upload("mb.txt", text.encode())])
    while (await service.repo.task(task["id"]))["status"] not in ("success", "failure"):
        await asyncio.sleep(0.2)
    elapsed = time.perf_counter() - started
    docs = await service.repo.documents((await service.find(admin, "megabyte"))["id"])
    print(f"1 MB text file to searchable: {elapsed:.1f} s ({docs[0]['chunks']:,} chunks of "
          f"200 tokens, overlap 40: {docs[0]['chunks'] / elapsed:.1f} chunks/s)")
    result = {"database": db.describe(), "pgvector": db.pgvector, "chunks": CHUNKS,
              "stored_s": stored_s, "first_search_s": first,
              "search_p50_s": statistics.median(times),
              "search_p95_s": sorted(times)[int(len(times) * 0.95)],
              "megabyte_searchable_s": elapsed, "megabyte_chunks": docs[0]["chunks"]}
    await service.close()
    await db.close()
    return result


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--database-url", help="an empty database (default: SQLite in a temporary "
                        "folder)")
    run_benchmark(parser, lambda args: asyncio.run(measure(args.database_url)))


if __name__ == "__main__":
    main()
