"""``ResponseRepository``: the Responses API's stored responses (the ``responses`` table).

A row holds the response object as answered and every input item it answered (the items of the
responses it followed first), so that ``previous_response_id`` needs one read. Every read and
delete is scoped to an owner (a key id, or ``"*"`` for the admin key and an open server): another
owner's response is indistinguishable from one that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select

from switchboard.persistence.database import Database
from switchboard.persistence.tables import stored_responses


@dataclass(frozen=True)
class StoredResponse:
    response: dict[str, Any]
    input_items: list[dict[str, Any]]

    @property
    def conversation(self) -> list[dict[str, Any]]:
        """What a response that follows this one comes after: its input, then its output."""
        return [*self.input_items, *self.response.get("output", [])]


class ResponseRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, owner: str, response: dict[str, Any],
                     input_items: list[dict[str, Any]]) -> None:
        created = datetime.fromtimestamp(int(response["created_at"]), UTC)
        async with self._db.engine.begin() as conn:
            await conn.execute(insert(stored_responses).values(
                id=response["id"], owner=owner, created_at=created, model=response.get("model"),
                response=response, input_items=input_items))

    async def get(self, owner: str, response_id: str) -> StoredResponse | None:
        query = select(stored_responses.c.response, stored_responses.c.input_items).where(
            stored_responses.c.id == response_id, stored_responses.c.owner == owner)
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return StoredResponse(row.response, row.input_items) if row is not None else None

    async def delete(self, owner: str, response_id: str) -> bool:
        """Whether the owner's response existed (and is now gone)."""
        async with self._db.engine.begin() as conn:
            result = await conn.execute(delete(stored_responses).where(
                stored_responses.c.id == response_id, stored_responses.c.owner == owner))
        return bool(result.rowcount)
