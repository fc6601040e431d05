"""Chunk vectors in pgvector, on PostgreSQL servers that have the extension.

On such a server the database stores and searches the vectors itself: ``chunk_vectors`` holds
one ``vector(384)`` per chunk (``chunks.embedding`` stays NULL there) and a search is one SQL
query, so replicas keep no copy of any bucket in memory and see every change at once. Elsewhere
(SQLite, PostgreSQL without pgvector) vectors stay in ``chunks.embedding`` as float32 bytes and
``retrieval.index.VectorIndex`` searches them with NumPy.

``enable_pgvector`` runs at every open, after the migrations and under their lock: where the
extension is available (or already created) and ``chunk_vectors`` does not exist yet, it creates
both and moves any vectors already stored into the table. A server that gains pgvector later
switches over at its next start. It lives outside Alembic's history because it depends on what
the server has installed, not on the schema version.
"""

from __future__ import annotations

import logging

import numpy as np
from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    insert,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError

from switchboard.persistence.tables import chunks

log = logging.getLogger(__name__)

WIDTH = 384
BACKFILL_BATCH = 1000

# Not in ``tables.metadata``: the table exists only where pgvector does.
chunk_vectors = Table(
    "chunk_vectors",
    MetaData(),
    Column("chunk_id", Integer, primary_key=True),  # chunks.id, ON DELETE CASCADE
    Column("bucket_id", String(32), nullable=False, index=True),
    Column("embedding", Vector(WIDTH), nullable=False),  # unit length
)

_CREATE = (
    "CREATE EXTENSION IF NOT EXISTS vector",
    f"""CREATE TABLE chunk_vectors (
        chunk_id integer PRIMARY KEY REFERENCES chunks (id) ON DELETE CASCADE,
        bucket_id varchar(32) NOT NULL,
        embedding vector({WIDTH}) NOT NULL)""",
    "CREATE INDEX ix_chunk_vectors_bucket_id ON chunk_vectors (bucket_id)",
    "ALTER TABLE chunks ALTER COLUMN embedding DROP NOT NULL",
)


def nearest_query(bucket_ids: list[str], query: np.ndarray, k: int) -> Select:
    """The ``k`` chunks of these buckets closest to the unit vector ``query``, closest first:
    rows of (chunk_id, negative_dot). Exact, unless an HNSW index exists: PostgreSQL's planner
    then uses it for large buckets (approximately) and keeps exact scans for small ones."""
    # the vectors are unit length, so the cosine distance is 1 + the negative inner product
    # (<#>), which pgvector computes without the two norms that <=> also works out
    negative_dot = chunk_vectors.c.embedding.max_inner_product(query.astype(np.float32))
    return (select(chunk_vectors.c.chunk_id, negative_dot.label("negative_dot"))
            .where(chunk_vectors.c.bucket_id.in_(bucket_ids))
            .order_by(negative_dot, chunk_vectors.c.chunk_id).limit(k))


def enable_pgvector(connection: Connection) -> bool:
    """Whether vectors live in pgvector on this PostgreSQL server (setting it up if it can)."""
    if connection.scalar(text("SELECT to_regclass('chunk_vectors') IS NOT NULL")):
        return True
    available = connection.scalar(text(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'"))
    if not available:
        log.info("PostgreSQL has no pgvector extension: chunk vectors are stored as bytes and "
                 "searched in memory with NumPy")
        return False
    try:
        with connection.begin_nested():
            for statement in _CREATE:
                connection.execute(text(statement))
    except DBAPIError as exc:  # e.g. not allowed to create the extension
        log.warning("pgvector is installed but could not be set up (%s); chunk vectors are "
                    "stored as bytes and searched in memory with NumPy",
                    str(exc.orig).strip().splitlines()[0])
        return False
    moved = _move_vectors(connection)
    log.info("pgvector set up: chunk vectors are stored and searched in PostgreSQL "
             "(%d moved from chunks.embedding)", moved)
    return True


def _move_vectors(connection: Connection) -> int:
    """Copy the vectors stored as bytes into ``chunk_vectors``, then clear the bytes."""
    moved, last = 0, 0
    while True:
        rows = connection.execute(
            select(chunks.c.id, chunks.c.bucket_id, chunks.c.embedding)
            .where(chunks.c.id > last, chunks.c.embedding.is_not(None))
            .order_by(chunks.c.id).limit(BACKFILL_BATCH)).all()
        if not rows:
            break
        connection.execute(insert(chunk_vectors), [
            {"chunk_id": r.id, "bucket_id": r.bucket_id,
             "embedding": np.frombuffer(r.embedding, dtype="<f4")} for r in rows])
        moved += len(rows)
        last = rows[-1].id
    connection.execute(chunks.update().values(embedding=None))
    return moved
