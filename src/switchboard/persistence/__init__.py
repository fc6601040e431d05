"""Persistence: the one database (SQLite by default, PostgreSQL at scale) behind SQLAlchemy 2's
async engine, its tables, and the Alembic migrations that bring it to the current schema at start.
Nothing here knows about HTTP; repositories take and return plain values."""

from switchboard.persistence.database import (
    DATABASE_ERRORS,
    Database,
    database_unreachable,
    database_url,
)

__all__ = ["DATABASE_ERRORS", "Database", "database_unreachable", "database_url"]
