"""``UsageRepository``: the ``requests`` ledger: batched inserts, spend sums, filtered reads and
grouped summaries (by key, model and/or UTC day), portable across SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Literal

import orjson
from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    DateTime,
    Dialect,
    Select,
    bindparam,
    case,
    func,
    insert,
    select,
)

from switchboard.persistence.database import Database, database_unreachable
from switchboard.persistence.tables import requests

Row = dict[str, Any]
GroupBy = Literal["key", "model", "day", "deployment", "session"]
GROUP_COLUMNS = {"key": requests.c.key_id, "model": requests.c.model, "day": requests.c.day,
                 "deployment": requests.c.deployment, "session": requests.c.session_id}


log = logging.getLogger(__name__)

MAX_JSON_DEPTH = 64  # a ledger row's JSON (content, parameters, metrics) is kept this deep
TOO_DEEP = f"[nested deeper than {MAX_JSON_DEPTH} levels: not stored]"
JSON_COLUMNS = ("content", "metrics", "parameters")

_Insert = tuple[str, Callable[[Row], tuple[Any, ...]], list[tuple[int, str]]]


def _kind(type_: Any, sqlite: bool) -> str | None:
    """How a column's values must be converted for the driver (None: as they are)."""
    if isinstance(type_, JSON):
        return "json"
    if sqlite and isinstance(type_, DateTime):
        return "datetime"
    if sqlite and isinstance(type_, Boolean):
        return "bool"
    return None


def _clean(value: Any, depth: int = 0) -> Any:
    """``value`` as every driver and database takes it: text without NUL characters or lone
    surrogates (PostgreSQL refuses the first, UTF-8 the second), integers within 64 bits (else
    their digits, as text), inside JSON too, and JSON nested at most ``MAX_JSON_DEPTH`` deep
    (deeper values become ``TOO_DEEP``: orjson and SQLite's JSON functions refuse deep nesting).
    Anything else JSON cannot hold becomes its ``str``."""
    if depth > MAX_JSON_DEPTH:
        return TOO_DEEP
    if value is None or isinstance(value, float | datetime):
        return value
    if isinstance(value, str):
        if not value.isascii():
            value = value.encode("utf-8", "replace").decode("utf-8")
        return value.replace("\x00", "\ufffd")
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)
    if isinstance(value, dict):
        return {_clean(str(k)): _clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v, depth + 1) for v in value]
    return _clean(str(value))


def _cleaned(row: Row) -> Row:
    """A ledger row made storable: cleaned values, text cut to its column's length."""
    out = {name: _clean(value) for name, value in row.items()}
    for name, value in out.items():
        length = getattr(requests.c[name].type, "length", None) if name in requests.c else None
        if length and isinstance(value, str):
            out[name] = value[:length]
    return out


DROPPED_FIELDS = ("request_id", "created_at", "key_id", "model", "deployment", "status",
                  "input_tokens", "output_tokens", "cost_usd")


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:200]


def _value(value: Any, kind: str) -> Any:
    """JSON as text; on SQLite, datetimes in SQLAlchemy's own text form and booleans as 0/1."""
    if value is None:
        return None
    if kind == "json":
        return orjson.dumps(value).decode()
    if kind == "datetime":
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    return int(value)


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
        self._statements: dict[str, _Insert] = {}

    async def insert_many(self, rows: list[Row]) -> None:
        """One driver-level statement for the batch: compiled once per dialect, with the values
        converted here (JSON with orjson), skipping SQLAlchemy's per-row bind processing, which
        cost the ledger several times more event-loop time per row.

        PostgreSQL gets an ``executemany``. SQLite gets the whole batch as one JSON array that
        it unpacks itself (``json_each``): Python's sqlite3 takes the GIL back for every row of
        an ``executemany``, and while the event loop keeps the GIL busy each row waits out a
        thread switch (Python's switch interval), so a large batch took seconds and the ledger
        fell behind under load; one statement hands the GIL over once per batch (docs,
        Performance: ``bench/ledger_soak.py``). ``json_extract`` rather than ``->>``: SQLite
        before 3.38 has only the former."""
        if not rows:
            return
        try:
            await self._insert(rows)
        except Exception as exc:
            if database_unreachable(exc) or isinstance(exc, OSError | TimeoutError):
                raise
            # A client's text (a NUL, a lone surrogate, an overlong session id) or a huge
            # integer must not hold the whole ledger back: write the batch again, cleaned.
            log.warning("usage ledger: batch refused (%s: %s); writing it cleaned",
                        type(exc).__name__, _first_line(exc))
            await self._insert_cleaned(rows)

    async def _insert_cleaned(self, rows: list[Row]) -> None:
        """The batch cleaned; if that is refused too, row by row, so that a row no database
        takes is set aside (stored without its JSON, else logged and dropped) and never holds
        back the rows after it. Only an unreachable database raises (the ledger retries)."""
        cleaned = [_cleaned(row) for row in rows]
        try:
            await self._insert(cleaned)
            return
        except Exception as exc:
            if database_unreachable(exc) or isinstance(exc, OSError | TimeoutError):
                raise
            if len(cleaned) == 1:
                return await self._set_aside(cleaned[0], exc)
        for row in cleaned:
            try:
                await self._insert([row])
            except Exception as exc:
                if database_unreachable(exc) or isinstance(exc, OSError | TimeoutError):
                    raise
                await self._set_aside(row, exc)

    async def _set_aside(self, row: Row, exc: Exception) -> None:
        """A row refused even cleaned: stored without its JSON columns (its tokens and cost
        still count), else dropped with an error naming it."""
        log.error("usage ledger: row %s refused (%s: %s); storing it without %s",
                  row.get("request_id"), type(exc).__name__, _first_line(exc),
                  ", ".join(JSON_COLUMNS))
        bare = {**row, **dict.fromkeys(JSON_COLUMNS)}
        try:
            await self._insert([bare])
        except Exception as again:
            if database_unreachable(again) or isinstance(again, OSError | TimeoutError):
                raise
            log.error("usage ledger: row dropped: %s (%s: %s)",
                      {k: row.get(k) for k in DROPPED_FIELDS}, type(again).__name__,
                      _first_line(again))

    async def _insert(self, rows: list[Row]) -> None:
        async with self._db.engine.begin() as conn:
            sql, take, convert = self._insert_statement(conn.dialect)
            params = []
            for row in rows:
                values = list(take(row))
                for index, kind in convert:
                    values[index] = _value(values[index], kind)
                params.append(tuple(values))
            if conn.dialect.name == "sqlite":
                await conn.exec_driver_sql(sql, (orjson.dumps(params).decode(),))
            else:
                await conn.exec_driver_sql(sql, params)

    def _insert_statement(self, dialect: Dialect) -> _Insert:
        """The compiled INSERT, a getter of its values in the driver's order, and which of
        them need converting."""
        cached = self._statements.get(dialect.name)
        if cached is None:
            columns = [c for c in requests.c if c.name != "id"]
            compiled = insert(requests).values(
                {c.name: bindparam(c.name, type_=c.type) for c in columns}
            ).compile(dialect=dialect)
            kinds = {c.name: _kind(c.type, dialect.name == "sqlite") for c in columns}
            order = list(compiled.positiontup or ())
            convert = [(i, kinds[name]) for i, name in enumerate(order) if kinds[name]]
            sql = compiled.string
            if dialect.name == "sqlite":  # the rows arrive as one JSON array of arrays
                fields = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(order)))
                sql = f"{sql.split(' VALUES ')[0]} SELECT {fields} FROM json_each(?)"
            cached = (sql, itemgetter(*order), convert)
            self._statements[dialect.name] = cached
        return cached

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
