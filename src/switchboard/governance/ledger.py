"""``UsageLedger``: every request's record, written in batches off the request path.

``record`` only appends to a buffer; a background task inserts the buffer with one
``executemany`` every ``interval_s`` (sooner when ``batch`` rows wait). A failed write keeps its
rows and is retried; ``close`` (on shutdown, SIGTERM included) writes whatever is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from switchboard.persistence.usage import UsageRepository

log = logging.getLogger(__name__)


class UsageLedger:
    def __init__(self, repo: UsageRepository, interval_s: float = 0.5, batch: int = 2000) -> None:
        self.repo = repo
        self._interval = interval_s
        self._batch = batch
        self._rows: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.written = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-ledger")

    def record(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        if len(self._rows) >= self._batch:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._rows)

    async def flush(self) -> None:
        """Write everything buffered now (the rows stay buffered if the write fails)."""
        while self._rows:
            rows, self._rows = self._rows[: self._batch * 5], self._rows[self._batch * 5:]
            try:
                await self.repo.insert_many(rows)
            except BaseException:
                self._rows[:0] = rows
                raise
            self.written += len(rows)

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
