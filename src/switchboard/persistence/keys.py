"""``KeyRepository``: the ``api_keys`` rows (hashes only; a key's secret is never stored)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update

from switchboard.persistence.database import Database
from switchboard.persistence.tables import api_keys

Row = dict[str, Any]


class KeyRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, row: Row) -> None:
        async with self._db.engine.begin() as conn:
            await conn.execute(insert(api_keys).values(**row))

    async def get(self, key_id: str) -> Row | None:
        return await self._one(select(api_keys).where(api_keys.c.id == key_id))

    async def by_prefix(self, prefix: str) -> Row | None:
        return await self._one(select(api_keys).where(api_keys.c.prefix == prefix))

    async def list(self, include_revoked: bool = False) -> list[Row]:
        query = select(api_keys).order_by(api_keys.c.created_at)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        async with self._db.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]

    async def update(self, key_id: str, values: Row) -> Row | None:
        if not values:  # nothing to change (an UPDATE needs a SET)
            return await self.get(key_id)
        async with self._db.engine.begin() as conn:
            result = await conn.execute(
                update(api_keys).where(api_keys.c.id == key_id).values(**values)
            )
        return await self.get(key_id) if result.rowcount else None

    async def revoke(self, key_id: str, at: datetime) -> Row | None:
        async with self._db.engine.begin() as conn:
            await conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=at)
            )
        return await self.get(key_id)

    async def count_active(self) -> int:
        query = select(func.count()).select_from(api_keys).where(api_keys.c.revoked_at.is_(None))
        async with self._db.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def any_ever(self) -> bool:
        """Whether a key was ever stored (revoked and expired ones count)."""
        query = select(api_keys.c.id).limit(1)
        async with self._db.engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def _one(self, query: Any) -> Row | None:
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return dict(row) if row is not None else None
