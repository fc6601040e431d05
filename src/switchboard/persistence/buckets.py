"""``BucketRepository``: document buckets, their documents, embedded chunks and embedding tasks.

A bucket's ``version`` goes up in the same transaction as any change to its chunks, so a search
index can tell with one small query whether what it holds is current. Where the database keeps
vectors in pgvector (``Database.pgvector``), a chunk's vector goes to ``chunk_vectors`` instead
of ``chunks.embedding``, and ``nearest`` searches them there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from switchboard.persistence.database import Database
from switchboard.persistence.tables import buckets, chunks, documents, embedding_tasks
from switchboard.persistence.vectors import chunk_vectors, nearest_query

Row = dict[str, Any]


class BucketExists(Exception):
    pass


class BucketRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def pgvector(self) -> bool:
        """Whether the database stores and searches the vectors (else: ``vectors`` + NumPy)."""
        return self._db.pgvector

    # -- buckets -------------------------------------------------------------------------------

    async def create_bucket(self, row: Row) -> None:
        try:
            async with self._db.engine.begin() as conn:
                await conn.execute(insert(buckets).values(**row))
        except IntegrityError as exc:
            raise BucketExists(row["name"]) from exc

    async def bucket(self, owner: str | None, name: str) -> Row | None:
        """By name, among ``owner``'s buckets (every owner's when ``None``)."""
        query = select(buckets).where(buckets.c.name == name)
        if owner is not None:
            query = query.where(buckets.c.owner == owner)
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(buckets.c.created_at))).mappings().all()
        return dict(rows[0]) if rows else None

    async def list_buckets(self, owner: str | None) -> list[Row]:
        docs = (select(documents.c.bucket_id, func.count().label("documents"),
                       func.coalesce(func.sum(documents.c.chunks), 0).label("chunks"))
                .group_by(documents.c.bucket_id).subquery())
        query = (select(buckets, func.coalesce(docs.c.documents, 0).label("documents"),
                        func.coalesce(docs.c.chunks, 0).label("chunks"))
                 .select_from(buckets.outerjoin(docs, docs.c.bucket_id == buckets.c.id))
                 .order_by(buckets.c.created_at))
        if owner is not None:
            query = query.where(buckets.c.owner == owner)
        async with self._db.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]

    async def versions(self, bucket_ids: list[str]) -> dict[str, int]:
        query = select(buckets.c.id, buckets.c.version).where(buckets.c.id.in_(bucket_ids))
        async with self._db.engine.connect() as conn:
            return {r.id: r.version for r in await conn.execute(query)}

    async def delete_bucket(self, bucket_id: str) -> None:
        async with self._db.engine.begin() as conn:
            for table in (chunks, documents, embedding_tasks, buckets):
                column = table.c.id if table is buckets else table.c.bucket_id
                await conn.execute(delete(table).where(column == bucket_id))

    # -- documents -----------------------------------------------------------------------------

    async def documents(self, bucket_id: str) -> list[Row]:
        query = (select(*(c for c in documents.c if c.name != "text"))
                 .where(documents.c.bucket_id == bucket_id).order_by(documents.c.filename))
        async with self._db.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]

    async def document(self, document_id: str) -> Row | None:
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(select(documents).where(documents.c.id == document_id))
                   ).mappings().first()
        return dict(row) if row else None

    async def put_documents(self, bucket_id: str, rows: list[Row], task: Row) -> list[str]:
        """Store uploaded documents (a re-upload of a filename replaces it) and their task, in
        one transaction; returns the ids of the documents to embed (unchanged files are not)."""
        todo = []
        async with self._db.engine.begin() as conn:
            for row in rows:
                old = (await conn.execute(select(documents.c.id, documents.c.checksum).where(
                    documents.c.bucket_id == bucket_id, documents.c.filename == row["filename"])
                )).first()
                if old is not None and old.checksum == row["checksum"]:
                    continue
                if old is not None:
                    await conn.execute(delete(documents).where(documents.c.id == old.id))
                    await conn.execute(delete(chunks).where(chunks.c.document_id == old.id))
                    await self._bump(conn, bucket_id)
                await conn.execute(insert(documents).values(**row))
                todo.append(row["id"])
            await conn.execute(insert(embedding_tasks).values(**task, documents=todo))
        return todo

    async def rechunk(self, bucket_id: str, chunk_size: int, chunk_overlap: int,
                      task: Row) -> list[str]:
        """Set every document of the bucket to be chunked anew, with the task that will."""
        async with self._db.engine.begin() as conn:
            ids = [r.id for r in await conn.execute(
                select(documents.c.id).where(documents.c.bucket_id == bucket_id))]
            await conn.execute(update(documents).where(documents.c.bucket_id == bucket_id)
                               .values(chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                                       status="pending"))
            await conn.execute(insert(embedding_tasks).values(**task, documents=ids))
        return ids

    async def delete_document(self, bucket_id: str, filename: str) -> bool:
        async with self._db.engine.begin() as conn:
            found = (await conn.execute(select(documents.c.id).where(
                documents.c.bucket_id == bucket_id, documents.c.filename == filename))).first()
            if found is None:
                return False
            await conn.execute(delete(chunks).where(chunks.c.document_id == found.id))
            await conn.execute(delete(documents).where(documents.c.id == found.id))
            await self._bump(conn, bucket_id)
        return True

    # -- chunks --------------------------------------------------------------------------------

    async def replace_chunks(self, document_id: str, bucket_id: str, rows: list[Row]) -> bool:
        """Swap in a document's new chunks; ``False`` if the document went away meanwhile."""
        async with self._db.engine.begin() as conn:
            gone = (await conn.execute(select(documents.c.id).where(
                documents.c.id == document_id))).first() is None
            if gone:
                return False
            await conn.execute(delete(chunks).where(chunks.c.document_id == document_id))
            if rows and self.pgvector:
                ids = (await conn.execute(
                    insert(chunks).returning(chunks.c.id, sort_by_parameter_order=True),
                    [{**row, "embedding": None} for row in rows])).scalars().all()
                await conn.execute(insert(chunk_vectors), [
                    {"chunk_id": chunk_id, "bucket_id": bucket_id,
                     "embedding": np.frombuffer(row["embedding"], dtype="<f4")}
                    for chunk_id, row in zip(ids, rows, strict=True)])
            elif rows:
                await conn.execute(insert(chunks), rows)
            await conn.execute(update(documents).where(documents.c.id == document_id)
                               .values(status="embedded", chunks=len(rows)))
            await self._bump(conn, bucket_id)
        return True

    async def mark_failed(self, document_ids: list[str]) -> None:
        async with self._db.engine.begin() as conn:
            await conn.execute(update(documents).where(documents.c.id.in_(document_ids))
                               .values(status="failed"))

    async def vectors(self, bucket_id: str) -> list[tuple[int, bytes]]:
        """A bucket's vectors as stored in ``chunks.embedding`` (not on pgvector)."""
        query = select(chunks.c.id, chunks.c.embedding).where(chunks.c.bucket_id == bucket_id)
        async with self._db.engine.connect() as conn:
            return [(r.id, r.embedding) for r in await conn.execute(query)]

    async def nearest(self, bucket_ids: list[str], query: np.ndarray,
                      k: int) -> list[tuple[int, float]]:
        """On pgvector: the ``k`` chunks of these buckets closest to the unit vector ``query``,
        closest first, as (chunk id, cosine distance)."""
        async with self._db.engine.connect() as conn:
            found = await conn.execute(nearest_query(bucket_ids, query, k))
            return [(r.chunk_id, 1.0 + r.negative_dot) for r in found]

    async def chunks(self, chunk_ids: list[int]) -> dict[int, Row]:
        query = (select(chunks.c.id, chunks.c.position, chunks.c.start_char, chunks.c.end_char,
                        chunks.c.text, chunks.c.bucket_id, documents.c.filename,
                        documents.c.checksum, documents.c.content_type)
                 .select_from(chunks.join(documents, documents.c.id == chunks.c.document_id))
                 .where(chunks.c.id.in_(chunk_ids)))
        async with self._db.engine.connect() as conn:
            return {r["id"]: dict(r) for r in (await conn.execute(query)).mappings()}

    # -- tasks ---------------------------------------------------------------------------------

    async def task(self, task_id: str) -> Row | None:
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(select(embedding_tasks).where(
                embedding_tasks.c.id == task_id))).mappings().first()
        return dict(row) if row else None

    async def unfinished_tasks(self) -> list[Row]:
        query = (select(embedding_tasks)
                 .where(embedding_tasks.c.status.in_(("queued", "processing")))
                 .order_by(embedding_tasks.c.created_at))
        async with self._db.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]

    async def set_task(self, task_id: str, status: str, reason: str | None = None) -> None:
        finished = datetime.now(UTC) if status in ("success", "failure") else None
        async with self._db.engine.begin() as conn:
            await conn.execute(update(embedding_tasks).where(embedding_tasks.c.id == task_id)
                               .values(status=status, reason=reason, finished_at=finished))

    @staticmethod
    async def _bump(conn: AsyncConnection, bucket_id: str) -> None:
        await conn.execute(update(buckets).where(buckets.c.id == bucket_id)
                           .values(version=buckets.c.version + 1))
