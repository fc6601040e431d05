"""The schema, as SQLAlchemy Core tables (Core, not the ORM: rows are plain values, and the ledger
inserts thousands of them a second with one ``executemany``).

Changing a table means adding an Alembic revision under ``migrations/versions``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("prefix", String(32), nullable=False, unique=True),  # shown, and used for the lookup
    Column("secret_hash", String(64), nullable=False),  # sha256 hex of the whole key
    Column("models", JSON, nullable=True),  # allowed public model names; null = all
    Column("rpm", Integer, nullable=True),
    Column("tpm", Integer, nullable=True),
    Column("model_limits", JSON, nullable=True),  # {model: {"rpm": n, "tpm": n}}
    Column("max_parallel", Integer, nullable=True),
    Column("budget_usd", Float, nullable=True),
    Column("budget_period", String(16), nullable=True),  # "1d", "30d", … ; null = lifetime
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("metadata", JSON, nullable=True),
)

requests = Table(
    "requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("day", String(10), nullable=False),  # UTC date, for grouping on any database
    Column("key_id", String(32), nullable=True),
    Column("session_id", String(200), nullable=True),
    Column("endpoint", String(32), nullable=False),
    Column("model", String(200), nullable=True),
    Column("deployment", String(200), nullable=True),
    Column("provider", String(32), nullable=True),
    Column("stream", Boolean, nullable=False, default=False),
    Column("status", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("input_tokens", Integer, nullable=False, default=0),
    Column("output_tokens", Integer, nullable=False, default=0),
    Column("cached_tokens", Integer, nullable=False, default=0),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("latency_s", Float, nullable=True),
    Column("ttft_s", Float, nullable=True),
    Column("metrics", JSON, nullable=True),
    Column("parameters", JSON, nullable=True),
    # {"messages": …, "output": …} when content logging is on
    Column("content", JSON, nullable=True),
    Index("ix_requests_key_created", "key_id", "created_at"),
    Index("ix_requests_model_created", "model", "created_at"),
    Index("ix_requests_session", "session_id"),
    Index("ix_requests_created", "created_at"),
)

# Retrieval: document buckets, their documents and embedded chunks, and embedding tasks.
buckets = Table(
    "buckets",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(32), nullable=False),  # a key id, or "*" for the admin / open server
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),  # bumped whenever its chunks change
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("owner", "name", name="uq_buckets_owner_name"),
)

documents = Table(
    "documents",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("bucket_id", String(32), nullable=False, index=True),
    Column("filename", String(500), nullable=False),
    Column("content_type", String(100), nullable=False),
    Column("checksum", String(64), nullable=False),  # sha256 of the uploaded bytes
    Column("size", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("chunk_size", Integer, nullable=False),
    Column("chunk_overlap", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # pending | embedded | failed
    Column("chunks", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("bucket_id", "filename", name="uq_documents_bucket_filename"),
)

chunks = Table(
    "chunks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("bucket_id", String(32), nullable=False, index=True),
    Column("document_id", String(32), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("start_char", Integer, nullable=False),
    Column("end_char", Integer, nullable=False),
    Column("text", Text, nullable=False),
    # float32, little-endian, unit length; NULL where pgvector holds it (persistence.vectors)
    Column("embedding", LargeBinary, nullable=True),
)

embedding_tasks = Table(
    "embedding_tasks",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("bucket_id", String(32), nullable=False),
    Column("owner", String(32), nullable=False),
    Column("status", String(16), nullable=False),  # queued | processing | success | failure
    Column("reason", Text, nullable=True),
    Column("documents", JSON, nullable=False),  # document ids
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
)

# Responses API: stored responses (``store`` true), each with the whole input it answered.
stored_responses = Table(
    "responses",
    metadata,
    Column("id", String(64), primary_key=True),  # resp_…
    Column("owner", String(32), nullable=False),  # a key id, or "*" for the admin / open server
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("model", String(200), nullable=True),
    Column("response", JSON, nullable=False),  # the response object as answered
    Column("input_items", JSON, nullable=False),  # earlier turns' items, then this input's
    Index("ix_responses_owner_created", "owner", "created_at"),
)
