"""``BucketService``: document buckets owned by API keys, uploads embedded by a background task
whose status can be polled, and similarity search over them.

An upload is read and checked whole before anything is stored (a bad file fails the request and
stores nothing); its documents and task are stored in one transaction; a background worker per
owner chunks and embeds its tasks in turn, swapping each document's chunks in atomically. Owners'
workers share the encoder's rounds equally, so one key's large upload does not hold another's
behind it. Unfinished tasks are picked up again at start.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from switchboard.persistence.buckets import BucketExists, BucketRepository
from switchboard.retrieval.chunking import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE, chunk_text
from switchboard.retrieval.documents import DocumentError, extract_text
from switchboard.retrieval.index import VectorIndex
from switchboard.retrieval.service import EmbeddingService

log = logging.getLogger(__name__)

ALL = "*"  # the owner of buckets made by the admin key or on an open server
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
EMBED_BATCH = 64

__all__ = ["BucketExists", "BucketNotFound", "BucketService", "DocumentError", "Upload"]


class BucketNotFound(LookupError):
    pass


class Caller(Protocol):
    """Who asks: the governance's ``Principal`` (a key, the admin, or nobody on an open
    server). Buckets belong to the key that made them; the admin's and an open server's belong
    to everyone (``ALL``)."""

    @property
    def admin(self) -> bool: ...

    @property
    def key_id(self) -> str | None: ...


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes


def owner_of(principal: Caller) -> str:
    return principal.key_id if principal.key_id is not None and not principal.admin else ALL


def _visible_to(principal: Caller) -> str | None:
    """Whose buckets a caller sees: its own, or (admin) everyone's."""
    return None if principal.admin else owner_of(principal)


def _check_chunking(chunk_size: int, chunk_overlap: int) -> None:
    if chunk_size < 1 or not 0 <= chunk_overlap < chunk_size:
        raise DocumentError("document_chunk_size must be ≥ 1 and "
                            "document_chunk_overlap_size in [0, document_chunk_size)")


def _extract_all(files: list[Upload]) -> list[tuple[Upload, str, str, str]]:
    """Each file with its kind, its text and its checksum (DocumentError for the first bad
    one)."""
    return [(f, *extract_text(f.filename, f.data), hashlib.sha256(f.data).hexdigest())
            for f in files]


def _new_task(bucket_id: str, principal: Caller) -> dict[str, Any]:
    return {"id": "task_" + secrets.token_hex(12), "bucket_id": bucket_id,
            "owner": owner_of(principal), "status": "queued", "reason": None,
            "created_at": datetime.now(UTC), "finished_at": None}


class BucketService:
    def __init__(self, repo: BucketRepository, embeddings: EmbeddingService) -> None:
        self.repo = repo
        self.embeddings = embeddings
        self.index = VectorIndex(repo)
        self._queues: dict[str, deque[str]] = {}  # owner → its waiting task ids
        self._workers: dict[str, asyncio.Task[None]] = {}  # owner → the worker running them

    async def start(self) -> None:
        for task in await self.repo.unfinished_tasks():
            self._enqueue(task)

    async def close(self) -> None:
        for worker in list(self._workers.values()):
            worker.cancel()

    # -- buckets -------------------------------------------------------------------------------

    async def create(self, principal: Caller, name: str) -> dict[str, Any]:
        if not _NAME.match(name):
            raise DocumentError(f"bucket name {name!r}: use letters, digits, '.', '_' and '-' "
                                "(up to 200, starting with a letter or digit)")
        row = {"id": "bkt_" + secrets.token_hex(8), "owner": owner_of(principal), "name": name,
               "version": 0, "created_at": datetime.now(UTC)}
        await self.repo.create_bucket(row)
        return row

    async def find(self, principal: Caller, name: str) -> dict[str, Any]:
        row = await self.repo.bucket(_visible_to(principal), name)
        if row is None:
            raise BucketNotFound(name)
        return row

    async def list(self, principal: Caller) -> list[dict[str, Any]]:
        return await self.repo.list_buckets(_visible_to(principal))

    async def delete(self, principal: Caller, name: str) -> None:
        bucket = await self.find(principal, name)
        await self.repo.delete_bucket(bucket["id"])
        self.index.forget(bucket["id"])

    # -- documents -----------------------------------------------------------------------------

    async def upload(self, principal: Caller, name: str, files: list[Upload],
                     chunk_size: int = DEFAULT_CHUNK_SIZE,
                     chunk_overlap: int = DEFAULT_CHUNK_OVERLAP) -> dict[str, Any]:
        """Check every file, store them and queue their embedding; the bucket is created if
        it does not exist yet. Returns the task."""
        if not files:
            raise DocumentError("no files in the upload")
        _check_chunking(chunk_size, chunk_overlap)
        names = [f.filename for f in files]
        if len(set(names)) != len(names):
            raise DocumentError("the same filename appears twice in the upload")
        extracted = await asyncio.to_thread(_extract_all, files)  # may raise; PDFs take a while
        try:
            bucket = await self.find(principal, name)
        except BucketNotFound:
            try:
                bucket = await self.create(principal, name)
            except BucketExists:  # created concurrently
                bucket = await self.find(principal, name)
        now = datetime.now(UTC)
        rows = [{"id": "doc_" + secrets.token_hex(8), "bucket_id": bucket["id"],
                 "filename": f.filename, "content_type": kind, "checksum": checksum,
                 "size": len(f.data), "text": text, "chunk_size": chunk_size,
                 "chunk_overlap": chunk_overlap, "status": "pending", "chunks": 0,
                 "created_at": now}
                for f, kind, text, checksum in extracted]
        task = _new_task(bucket["id"], principal)
        todo = await self.repo.put_documents(bucket["id"], rows, task)
        self._enqueue(task)
        return {**task, "documents": todo, "bucket": bucket["name"]}

    async def rechunk(self, principal: Caller, name: str, chunk_size: int,
                      chunk_overlap: int) -> dict[str, Any]:
        """Embed a bucket's documents again with other chunk sizes (Telnyx's
        ``POST /v2/ai/embeddings``); returns the task."""
        _check_chunking(chunk_size, chunk_overlap)
        bucket = await self.find(principal, name)
        task = _new_task(bucket["id"], principal)
        ids = await self.repo.rechunk(bucket["id"], chunk_size, chunk_overlap, task)
        self._enqueue(task)
        return {**task, "documents": ids, "bucket": bucket["name"]}

    async def task(self, principal: Caller, task_id: str) -> dict[str, Any] | None:
        task = await self.repo.task(task_id)
        if task is None or (not principal.admin and task["owner"] != owner_of(principal)):
            return None
        return task

    # -- search --------------------------------------------------------------------------------

    async def search(self, principal: Caller, names: list[str], query: str,
                     k: int) -> list[dict[str, Any]]:
        """The ``k`` chunks closest to ``query`` over these buckets (BucketNotFound names the
        first unknown one)."""
        found = {}
        for name in names:
            found[name] = await self.find(principal, name)
        vectors, _ = await self.embeddings.embed([query], None)
        hits = await self.index.search([b["id"] for b in found.values()], vectors[0], k)
        rows = await self.repo.chunks([chunk_id for chunk_id, _ in hits])
        names_by_id = {b["id"]: b["name"] for b in found.values()}
        results = []
        for chunk_id, distance in hits:
            row = rows.get(chunk_id)
            if row is None:  # replaced since the index was read
                continue
            results.append({**row, "distance": distance, "bucket": names_by_id[row["bucket_id"]]})
        return results

    # -- the worker ----------------------------------------------------------------------------

    def _enqueue(self, task: dict[str, Any]) -> None:
        owner = task["owner"]
        self._queues.setdefault(owner, deque()).append(task["id"])
        if owner not in self._workers:
            self._workers[owner] = asyncio.create_task(self._work(owner),
                                                       name=f"embedding-tasks-{owner}")

    async def _work(self, owner: str) -> None:
        """Run an owner's tasks one after another, then end."""
        queue = self._queues[owner]
        while queue:
            task_id = queue.popleft()
            try:
                await self._run(task_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("embedding task %s failed", task_id)
                try:
                    await self.repo.set_task(task_id, "failure", f"{type(exc).__name__}: {exc}")
                except Exception:  # the database too: the task is taken up again at start
                    log.exception("could not record embedding task %s's failure", task_id)
        del self._queues[owner], self._workers[owner]

    async def _run(self, task_id: str) -> None:
        task = await self.repo.task(task_id)
        if task is None or task["status"] in ("success", "failure"):
            return
        await self.embeddings.wait_loaded()
        await self.repo.set_task(task_id, "processing")
        for document_id in task["documents"]:
            document = await self.repo.document(document_id)
            if document is None:  # deleted or replaced meanwhile
                continue
            try:
                await self._embed_document(document)
            except Exception:
                await self.repo.mark_failed([document_id])
                raise
        await self.repo.set_task(task_id, "success")

    async def _embed_document(self, document: dict[str, Any]) -> None:
        encoder = self.embeddings.encoder
        pieces = await asyncio.to_thread(chunk_text, encoder.full_tokenizer, document["text"],
                                         document["chunk_size"], document["chunk_overlap"])
        rows = []
        for start in range(0, len(pieces), EMBED_BATCH):
            batch = pieces[start: start + EMBED_BATCH]
            vectors, _ = await self.embeddings.embed([p.text for p in batch], None)
            rows += [{"bucket_id": document["bucket_id"], "document_id": document["id"],
                      "position": p.position, "start_char": p.start_char, "end_char": p.end_char,
                      "text": p.text, "embedding": v.astype("<f4").tobytes()}
                     for p, v in zip(batch, vectors, strict=True)]
        await self.repo.replace_chunks(document["id"], document["bucket_id"], rows)
