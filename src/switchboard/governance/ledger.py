"""``UsageLedger``: every request's record, written in batches off the request path.

``record`` only appends to a buffer; a background task inserts the buffer with one
``executemany`` every ``interval_s`` (sooner when ``batch`` rows wait). A failed write keeps its
rows and is retried; ``close`` (on shutdown, SIGTERM included) writes whatever is left. A process
killed outright (kill -9, power loss) loses the rows of at most the last interval.

``written(row)`` (``--ledger-sync``) wakes the writer at once and waits until the row is stored:
the rows that arrive while a write is in flight go together in the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from switchboard.persistence.usage import UsageRepository

log = logging.getLogger(__name__)

SYNC_WAIT_S = 10.0  # the longest a response waits for its row with --ledger-sync


class UsageLedger:
    def __init__(self, repo: UsageRepository, interval_s: float = 0.5, batch: int = 2000) -> None:
        self.repo = repo
        self._interval = interval_s
        self._batch = batch
        self._rows: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._waiting: dict[int, asyncio.Future[None]] = {}  # id(row) -> its writer's wait
        self._writing = asyncio.Lock()  # one write at a time, in the order rows were recorded
        self.written = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-ledger")

    def record(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        if len(self._rows) >= self._batch:
            self._wake.set()

    async def written_through(self, row: dict[str, Any], timeout_s: float = SYNC_WAIT_S) -> None:
        """Wait until ``row`` (already recorded) is in the database. A database that stays
        unreachable for ``timeout_s`` ends the wait with an error logged; the row stays
        buffered and is written once the database is back."""
        future = self._waiting.get(id(row))
        if future is None:
            future = self._waiting[id(row)] = asyncio.get_running_loop().create_future()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            log.error("usage ledger: row %s not written within %.0f s (kept, retrying)",
                      row.get("request_id"), timeout_s)

    def _stored(self, rows: list[dict[str, Any]]) -> None:
        if not self._waiting:
            return
        for row in rows:
            future = self._waiting.pop(id(row), None)
            if future is not None and not future.done():
                future.set_result(None)

    @property
    def pending(self) -> int:
        return len(self._rows)

    async def flush(self) -> None:
        """Write everything buffered now (the rows stay buffered if the write fails). A write
        already in flight is waited for first: when this returns, every row recorded before the
        call is stored (what a read of this replica's own writes relies on)."""
        async with self._writing:
            while self._rows:
                rows, self._rows = self._rows[: self._batch * 5], self._rows[self._batch * 5:]
                try:
                    await self.repo.insert_many(rows)
                except BaseException:
                    self._rows[:0] = rows
                    raise
                self.written += len(rows)
                self._stored(rows)

    async def flush_for_read(self) -> None:
        """Write what is buffered before the ledger is read; should that fail, the rows stay
        buffered (logged) and the read answers with what is stored."""
        try:
            await self.flush()
        except Exception:
            log.exception("usage ledger: write before a read failed (%d rows kept)", self.pending)

    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval * (1 + min(failures, 20)))
            self._wake.clear()
            try:
                await self.flush()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception("usage ledger: write failed (%d rows kept, retrying)", self.pending)

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await self._task
            except Exception:
                log.exception("usage ledger: writer failed")
        for attempt in range(3):
            try:
                await self.flush()
                return
            except Exception:
                log.exception("usage ledger: final write failed (attempt %d)", attempt + 1)
                await asyncio.sleep(0.5)
        log.error("usage ledger: %d rows could not be written", self.pending)
