"""``UsageRepository``: the ``requests`` ledger: batched inserts, spend sums, filtered reads and
grouped summaries (by key, model and/or UTC day), portable across SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, case, func, insert, select

from switchboard.persistence.database import Database
from switchboard.persistence.tables import requests

Row = dict[str, Any]
GroupBy = Literal["key", "model", "day", "deployment", "session"]
GROUP_COLUMNS = {"key": requests.c.key_id, "model": requests.c.model, "day": requests.c.day,
                 "deployment": requests.c.deployment, "session": requests.c.session_id}


@dataclass(frozen=True)
class UsageFilter:
    key_id: str | None = None
    model: str | None = None
    session_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.key_id is not None:
            found.append(requests.c.key_id == self.key_id)
        if self.model is not None:
            found.append(requests.c.model == self.model)
        if self.session_id is not None:
            found.append(requests.c.session_id == self.session_id)
        if self.start is not None:
            found.append(requests.c.created_at >= self.start)
        if self.end is not None:
            found.append(requests.c.created_at < self.end)
        return found


class UsageRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert_many(self, rows: list[Row]) -> None:
        if not rows:
            return
        async with self._db.engine.begin() as conn:
            await conn.execute(insert(requests), rows)

    async def spend(self, key_id: str, since: datetime | None) -> float:
        """What a key has spent since ``since`` (all time when ``None``)."""
        query = select(func.coalesce(func.sum(requests.c.cost_usd), 0.0)).where(
            *UsageFilter(key_id=key_id, start=since).clauses()
        )
        async with self._db.engine.connect() as conn:
            return float((await conn.execute(query)).scalar_one())

    async def records(
        self, where: UsageFilter, limit: int = 100, offset: int = 0, newest_first: bool = True
    ) -> list[Row]:
        order = requests.c.id.desc() if newest_first else requests.c.id.asc()
        query: Select[Any] = (
            select(requests).where(*where.clauses()).order_by(order)
            .limit(limit).offset(offset)
        )
        async with self._db.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]

    async def summary(self, where: UsageFilter, group_by: list[GroupBy]) -> list[Row]:
        """Totals per group: requests, errors, tokens, cost, mean latency and TTFT."""
        keys = [GROUP_COLUMNS[g].label(g) for g in group_by]
        query = (
            select(
                *keys,
                func.count().label("requests"),
                func.sum(case((requests.c.status >= 400, 1), else_=0)).label("errors"),
                func.sum(requests.c.input_tokens).label("input_tokens"),
                func.sum(requests.c.output_tokens).label("output_tokens"),
                func.sum(requests.c.cost_usd).label("cost_usd"),
                func.avg(requests.c.latency_s).label("mean_latency_s"),
                func.avg(requests.c.ttft_s).label("mean_ttft_s"),
            )
            .where(*where.clauses())
            .group_by(*(GROUP_COLUMNS[g] for g in group_by))
            .order_by(*(GROUP_COLUMNS[g] for g in group_by))
        )
        async with self._db.engine.connect() as conn:
            rows = [dict(r) for r in (await conn.execute(query)).mappings()]
        for row in rows:
            for name in ("requests", "errors", "input_tokens", "output_tokens"):
                row[name] = int(row[name] or 0)
            row["cost_usd"] = float(row["cost_usd"] or 0.0)
            for name in ("mean_latency_s", "mean_ttft_s"):
                row[name] = float(row[name]) if row[name] is not None else None
        return rows
