"""Document buckets and similarity search.

Switchboard's own: ``/v1/buckets`` (create, list, delete), ``/v1/buckets/{name}/documents``
(multipart upload → an embedding task, list, delete). Telnyx's: ``POST /v2/ai/embeddings``
(embed a bucket again with other chunk sizes), ``GET /v2/ai/embeddings/{task_id}`` (task
status), ``POST /v2/ai/embeddings/similarity-search``, ``GET /v2/ai/embeddings/buckets``
and ``…/buckets/{name}``, ``DELETE /v2/ai/embeddings/buckets/{name}``. Every call sees only the
caller's buckets (the admin key sees all).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from switchboard.governance.keys import aware
from switchboard.http.auth import principal
from switchboard.http.body_limits import CheckedRoute
from switchboard.http.errors import APIError, to_api_error
from switchboard.http.openapi import error_responses
from switchboard.retrieval.buckets import (
    BucketExists,
    BucketNotFound,
    BucketService,
    DocumentError,
    Upload,
)
from switchboard.retrieval.chunking import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE

INT32 = 2**31 - 1  # the chunk-size columns' range on every database

router = APIRouter(tags=["retrieval"], route_class=CheckedRoute)


class BucketCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class EmbedBucket(BaseModel):
    """Telnyx's ``POST /v2/ai/embeddings``."""

    bucket_name: str
    document_chunk_size: int = Field(default=DEFAULT_CHUNK_SIZE, le=INT32)
    document_chunk_overlap_size: int = Field(default=DEFAULT_CHUNK_OVERLAP, le=INT32)
    embedding_model: str | None = None
    loader: str | None = None


class SimilaritySearch(BaseModel):
    bucket_name: str
    query: str = Field(min_length=1)
    num_of_docs: int = Field(default=3, ge=1, le=100)


def _service(request: Request) -> BucketService:
    return request.app.state.buckets


def not_found(name: str) -> APIError:
    return to_api_error(BucketNotFound(name))


def _iso(value: datetime | None) -> str | None:
    return aware(value).isoformat() if value else None  # type: ignore[union-attr]


def _bucket(row: dict[str, Any]) -> dict[str, Any]:
    return {"name": row["name"], "id": row["id"], "created_at": _iso(row["created_at"]),
            "documents": row.get("documents", 0), "chunks": row.get("chunks", 0)}


def _task(row: dict[str, Any], bucket: str | None = None) -> dict[str, Any]:
    return {"task_id": row["id"], "task_name": "embed_bucket", "status": row["status"],
            "reason": row["reason"], "bucket": bucket, "documents": row["documents"],
            "created_at": _iso(row["created_at"]), "finished_at": _iso(row["finished_at"])}


@router.post("/v1/buckets", status_code=201, summary="Create a document bucket",
             responses=error_responses(400, 409))
async def create_bucket(body: BucketCreate, request: Request) -> JSONResponse:
    try:
        row = await _service(request).create(principal(request), body.name)
    except BucketExists as exc:
        raise APIError(409, f"bucket {body.name!r} already exists", param="name",
                       code="bucket_exists") from exc
    except DocumentError as exc:
        raise APIError(400, str(exc), param="name", code="invalid_value") from exc
    return JSONResponse(_bucket(row), status_code=201)


@router.get("/v1/buckets", summary="List your buckets")
async def list_buckets(request: Request) -> dict[str, Any]:
    rows = await _service(request).list(principal(request))
    return {"object": "list", "data": [_bucket(r) for r in rows]}


@router.delete("/v1/buckets/{name}", summary="Delete a bucket with its documents",
               responses=error_responses(404))
@router.delete("/v2/ai/embeddings/buckets/{name}", include_in_schema=False)
async def delete_bucket(name: str, request: Request) -> dict[str, Any]:
    try:
        await _service(request).delete(principal(request), name)
    except BucketNotFound as exc:
        raise not_found(name) from exc
    return {"name": name, "deleted": True}


@router.post("/v1/buckets/{name}/documents", status_code=202,
             summary="Upload documents (multipart); embedding runs as a task",
             responses=error_responses(400))
async def upload(
    name: str, request: Request, files: list[UploadFile],
    document_chunk_size: int = Form(DEFAULT_CHUNK_SIZE, le=INT32),
    document_chunk_overlap_size: int = Form(DEFAULT_CHUNK_OVERLAP, le=INT32),
) -> JSONResponse:
    uploads = [Upload(f.filename or "upload", await f.read()) for f in files]
    try:
        task = await _service(request).upload(principal(request), name, uploads,
                                              document_chunk_size, document_chunk_overlap_size)
    except DocumentError as exc:
        raise APIError(400, str(exc), param="files", code="invalid_document") from exc
    return JSONResponse({"data": _task(task, task["bucket"])}, status_code=202)


@router.get("/v1/buckets/{name}/documents", summary="A bucket's documents",
            responses=error_responses(404))
@router.get("/v2/ai/embeddings/buckets/{name}", include_in_schema=False)
async def list_documents(name: str, request: Request) -> dict[str, Any]:
    service = _service(request)
    try:
        bucket = await service.find(principal(request), name)
    except BucketNotFound as exc:
        raise not_found(name) from exc
    docs = await service.repo.documents(bucket["id"])
    return {"data": [{"filename": d["filename"], "status": d["status"], "chunks": d["chunks"],
                      "content_type": d["content_type"], "size": d["size"],
                      "checksum": d["checksum"], "created_at": _iso(d["created_at"])}
                     for d in docs]}


@router.delete("/v1/buckets/{name}/documents/{filename:path}", summary="Delete a document",
               responses=error_responses(404))
async def delete_document(name: str, filename: str, request: Request) -> dict[str, Any]:
    service = _service(request)
    try:
        bucket = await service.find(principal(request), name)
    except BucketNotFound as exc:
        raise not_found(name) from exc
    if not await service.repo.delete_document(bucket["id"], filename):
        raise APIError(404, f"no document {filename!r} in bucket {name!r}",
                       type="not_found_error", code="document_not_found")
    return {"filename": filename, "deleted": True}


@router.get("/v2/ai/embeddings/buckets", summary="Telnyx: your buckets' names")
async def telnyx_buckets(request: Request) -> dict[str, Any]:
    rows = await _service(request).list(principal(request))
    return {"data": {"buckets": [r["name"] for r in rows]}}


@router.post("/v2/ai/embeddings", status_code=202,
             summary="Embed a bucket's documents again with these chunk sizes",
             responses=error_responses(400, 404))
async def embed_bucket(body: EmbedBucket, request: Request) -> JSONResponse:
    service = _service(request)
    if body.embedding_model and not service.embeddings.serves(body.embedding_model):
        raise APIError(400, f"buckets are embedded with {service.embeddings.model_id!r}",
                       param="embedding_model", code="unsupported_parameter")
    try:
        task = await service.rechunk(principal(request), body.bucket_name,
                                     body.document_chunk_size, body.document_chunk_overlap_size)
    except BucketNotFound as exc:
        raise not_found(body.bucket_name) from exc
    except DocumentError as exc:
        raise APIError(400, str(exc), param="document_chunk_size", code="invalid_value") from exc
    return JSONResponse({"data": _task(task, task["bucket"])}, status_code=202)


@router.get("/v2/ai/embeddings/{task_id}", summary="An embedding task's status",
            responses=error_responses(404))
async def task_status(task_id: str, request: Request) -> dict[str, Any]:
    task = await _service(request).task(principal(request), task_id)
    if task is None:
        raise APIError(404, f"no embedding task {task_id!r}", type="not_found_error",
                       code="task_not_found")
    return {"data": _task(task)}


@router.post("/v2/ai/embeddings/similarity-search", summary="Closest chunks to a query",
             responses=error_responses(400, 404))
async def similarity_search(body: SimilaritySearch, request: Request) -> dict[str, Any]:
    try:
        hits = await _service(request).search(principal(request), [body.bucket_name], body.query,
                                              body.num_of_docs)
    except BucketNotFound as exc:
        raise not_found(body.bucket_name) from exc
    return {"data": [{
        "document_chunk": h["text"],
        "distance": round(h["distance"], 6),
        "metadata": {"source": f"{h['bucket']}/{h['filename']}", "filename": h["filename"],
                     "checksum": h["checksum"], "bucket": h["bucket"],
                     "chunk_position": h["position"], "start_char": h["start_char"],
                     "end_char": h["end_char"], "certainty": round(1 - h["distance"] / 2, 6),
                     "embedding": "all-minilm-l6-v2"},
    } for h in hits]}
