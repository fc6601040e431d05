"""``Database``: the async SQLAlchemy engine for the configured URL, migrated at open.

SQLite (``sqlite+aiosqlite``, the default, in the data directory) runs in WAL mode so readers
never block the ledger's writes; PostgreSQL goes through ``asyncpg``. Plain ``sqlite:///`` and
``postgresql://`` URLs are given their async driver. Migrations are Alembic's, run in-process at
open under a lock, so replicas that start together migrate once; on PostgreSQL the same lock
covers setting up pgvector where the server has it (``persistence.vectors``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from switchboard.persistence.vectors import enable_pgvector

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg",
           "postgres": "postgresql+asyncpg"}
MIGRATION_LOCK = 0x5357_4244  # pg_advisory_xact_lock id


# What the database layer raises, for the HTTP layer to answer (refused connections come from
# asyncpg unwrapped).
DATABASE_ERRORS = (SQLAlchemyError, ConnectionError)


def database_unreachable(exc: BaseException) -> bool:
    """The database itself failed (down, locked, connection lost), not the statement or its
    data (SQLite reports a syntax error as an ``OperationalError`` too)."""
    if isinstance(exc, InterfaceError | ConnectionError):
        return True
    if isinstance(exc, OperationalError):
        return "syntax error" not in str(exc.orig) and "no such" not in str(exc.orig)
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def database_url(database_url: str | None, data_dir: Path) -> str:
    """The URL to open: the configured one (with its async driver) or SQLite in ``data_dir``."""
    if not database_url:
        return f"sqlite+aiosqlite:///{data_dir / 'switchboard.db'}"
    url = make_url(database_url)
    driver = DRIVERS.get(url.drivername)
    if driver is not None:
        url = url.set(drivername=driver)
    return url.render_as_string(hide_password=False)


class Database:
    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.pgvector = False  # chunk vectors stored and searched in PostgreSQL (known at open)
        options: dict[str, Any] = {"json_serializer": _json}
        if not self.is_sqlite:
            options.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(self.url, **options)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    def describe(self) -> str:
        return self.url.render_as_string(hide_password=True)

    async def open(self) -> None:
        """Create the SQLite file's folder if needed and migrate to the latest schema."""
        if self.is_sqlite and self.url.database and self.url.database != ":memory:":
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        async with self.engine.begin() as conn:
            self.pgvector = await conn.run_sync(_upgrade, not self.is_sqlite)

    async def close(self) -> None:
        await self.engine.dispose()


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _upgrade(connection: Connection, postgres: bool) -> bool:
    """Migrate; on PostgreSQL, under the lock, and answer whether pgvector holds the vectors."""
    if postgres:
        connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    return postgres and enable_pgvector(connection)
