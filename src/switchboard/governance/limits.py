"""Rate-limit counters: requests and tokens per minute over a sliding window, parallel requests
and budget spend. The types every store shares, the ``LimitStore`` protocol and
``MemoryLimitStore`` (one process's counters); ``redis_limits.RedisLimitStore`` keeps them in
Redis so that replicas together enforce one exact limit.

``admit`` checks every scope (a key; a key on one model) in one step and, when all pass, counts
the request; ``settle`` adds the tokens a finished request used and its cost. Requests are exact
(a list of admission times); tokens use one-second buckets.

An admitted request also holds a reservation until it settles: its worst-case tokens against each
tpm limit and its worst-case cost against the budget. A request is admitted while what is used
plus what is held stays under the limit, so requests that arrive together cannot all pass a check
that none of them has counted yet: the overshoot stays within one request's worst case. ``settle``
replaces the reservation by what the request used. A reservation never settled (a crashed
replica's) lapses after ``STALE_S``.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

WINDOW_S = 60.0
STALE_S = 600.0  # a request still running after 10 minutes is a crashed replica's


class LimitStoreUnavailable(RuntimeError):
    """The shared counters cannot be reached (Redis down): requests are refused, not let by."""


@dataclass(frozen=True)
class Scope:
    """One set of counters: ``name`` is unique per key (and model)."""

    name: str
    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True)
class Spend:
    """A key's spend counter for one budget period."""

    name: str
    budget_usd: float
    ttl_s: int  # counters outlive their period by a little, then vanish


@dataclass
class Window:
    """One limit's state for the ``x-ratelimit-*`` headers."""

    limit: int
    remaining: int
    reset_s: float


@dataclass
class Verdict:
    allowed: bool
    reason: str | None = None  # requests | tokens | parallel | budget | spend_unknown
    retry_after_s: float = 0.0
    requests: Window | None = None
    tokens: Window | None = None
    spent_usd: float | None = None
    reserved_usd: float = 0.0  # held by requests in progress


class LimitStore(Protocol):
    async def admit(self, member: str, scopes: list[Scope], parallel: tuple[str, int] | None,
                    spend: Spend | None, reserve_tokens: int = 0,
                    reserve_usd: float = 0.0) -> Verdict:
        """``reserve_*``: held against the tpm limits and the budget until ``settle``."""
        ...

    async def settle(self, scopes: list[Scope], tokens: int, parallel: str | None,
                     spend: Spend | None, cost_usd: float, member: str = "") -> None: ...

    async def seed_spend(self, spend: Spend, value: float) -> None: ...

    async def close(self) -> None: ...


def tightest(current: Window | None, new: Window) -> Window:
    """The window with fewer requests (or tokens) left: the one the headers report."""
    return new if current is None or new.remaining < current.remaining else current


@dataclass
class _Counters:
    admitted: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    token_sum: int = 0
    reserved: dict[str, tuple[float, int]] = field(default_factory=dict)  # member: (at, tokens)

    def trim(self, now: float) -> None:
        cutoff = now - WINDOW_S
        while self.admitted and self.admitted[0] <= cutoff:
            self.admitted.popleft()
        while self.tokens and self.tokens[0][0] <= cutoff:
            self.token_sum -= self.tokens.popleft()[1]


class MemoryLimitStore:
    """One process's counters (asyncio is single-threaded: each call is atomic)."""

    def __init__(self) -> None:
        self._counters: dict[str, _Counters] = {}
        self._parallel: dict[str, int] = {}
        self._spend: dict[str, float] = {}
        self._spend_reserved: dict[str, dict[str, tuple[float, float]]] = {}

    async def admit(self, member: str, scopes: list[Scope], parallel: tuple[str, int] | None,
                    spend: Spend | None, reserve_tokens: int = 0,
                    reserve_usd: float = 0.0) -> Verdict:
        now = time.time()
        verdict = Verdict(True)
        for scope in scopes:
            counters = self._counters.setdefault(scope.name, _Counters())
            counters.trim(now)
            if scope.rpm is not None:
                used = len(counters.admitted)
                reset = counters.admitted[0] + WINDOW_S - now if counters.admitted else 0.0
                verdict.requests = tightest(verdict.requests,
                                             Window(scope.rpm, scope.rpm - used - 1, reset))
                if used >= scope.rpm and verdict.allowed:
                    verdict = _deny(verdict, "requests", reset)
            if scope.tpm is not None:
                used = counters.token_sum + int(_held(counters.reserved, now))
                reset = counters.tokens[0][0] + WINDOW_S - now if counters.tokens else 0.0
                verdict.tokens = tightest(verdict.tokens,
                                           Window(scope.tpm, max(0, scope.tpm - used), reset))
                if used >= scope.tpm and verdict.allowed:
                    verdict = _deny(verdict, "tokens", reset)
        if verdict.allowed and parallel is not None:
            name, limit = parallel
            if self._parallel.get(name, 0) >= limit:
                verdict = _deny(verdict, "parallel", 1.0)
        if verdict.allowed and spend is not None:
            spent = self._spend.get(spend.name)
            if spent is None:
                return _deny(verdict, "spend_unknown", 0.0)
            verdict.spent_usd = spent
            verdict.reserved_usd = _held(self._spend_reserved.setdefault(spend.name, {}), now)
            if spent + verdict.reserved_usd >= spend.budget_usd:
                retry = 1.0 if spent < spend.budget_usd else float(spend.ttl_s)
                verdict = _deny(verdict, "budget", retry)
        if not verdict.allowed:
            if verdict.requests is not None:
                verdict.requests.remaining = max(0, verdict.requests.remaining + 1)
            return verdict
        for scope in scopes:
            if scope.rpm is not None:
                self._counters[scope.name].admitted.append(now)
            if scope.tpm is not None and reserve_tokens > 0:
                self._counters[scope.name].reserved[member] = (now, reserve_tokens)
        if spend is not None and reserve_usd > 0:
            self._spend_reserved[spend.name][member] = (now, reserve_usd)
        if parallel is not None:
            self._parallel[parallel[0]] = self._parallel.get(parallel[0], 0) + 1
        return verdict

    async def settle(self, scopes: list[Scope], tokens: int, parallel: str | None,
                     spend: Spend | None, cost_usd: float, member: str = "") -> None:
        now = time.time()
        for scope in scopes:
            if scope.tpm is not None:
                counters = self._counters.setdefault(scope.name, _Counters())
                counters.reserved.pop(member, None)
                if tokens > 0:
                    counters.tokens.append((now, tokens))
                    counters.token_sum += tokens
        if spend is not None:
            self._spend_reserved.get(spend.name, {}).pop(member, None)
        if parallel is not None:
            self._parallel[parallel] = max(0, self._parallel.get(parallel, 0) - 1)
        if spend is not None and cost_usd and spend.name in self._spend:
            self._spend[spend.name] += cost_usd

    async def seed_spend(self, spend: Spend, value: float) -> None:
        self._spend.setdefault(spend.name, value)

    async def close(self) -> None:
        return None


def _held(reserved: dict[str, tuple[float, float]] | dict[str, tuple[float, int]],
          now: float) -> float:
    """What the reservations in progress hold (dropping those older than ``STALE_S``)."""
    for member in [m for m, (at, _) in reserved.items() if at <= now - STALE_S]:
        del reserved[member]
    return sum(amount for _, amount in reserved.values())


def _deny(verdict: Verdict, reason: str, retry_after_s: float) -> Verdict:
    verdict.allowed = False
    verdict.reason = reason
    verdict.retry_after_s = max(retry_after_s, 0.0)
    return verdict
