"""Rate-limit counters: requests and tokens per minute over a sliding window, parallel requests
and budget spend, kept in this process (``MemoryLimitStore``) or in Redis (``RedisLimitStore``) so
that replicas together enforce one exact limit.

``admit`` checks every scope (a key; a key on one model) in one step and, when all pass, counts
the request; ``settle`` adds the tokens a finished request used and its cost. Requests are exact
(a sorted set of admission times in Redis); tokens use one-second buckets. In Redis both steps are
Lua scripts, atomic across replicas, on the Redis server's clock: an admission is one round trip,
and settled requests are batched into the next call instead of costing one of their own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

WINDOW_S = 60.0


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


class LimitStore(Protocol):
    async def admit(self, member: str, scopes: list[Scope], parallel: tuple[str, int] | None,
                    spend: Spend | None) -> Verdict: ...

    async def settle(self, scopes: list[Scope], tokens: int, parallel: str | None,
                     spend: Spend | None, cost_usd: float, member: str = "") -> None: ...

    async def seed_spend(self, spend: Spend, value: float) -> None: ...

    async def close(self) -> None: ...


def _tightest(current: Window | None, new: Window) -> Window:
    return new if current is None or new.remaining < current.remaining else current


@dataclass
class _Counters:
    admitted: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    token_sum: int = 0

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

    async def admit(self, member: str, scopes: list[Scope], parallel: tuple[str, int] | None,
                    spend: Spend | None) -> Verdict:
        now = time.time()
        verdict = Verdict(True)
        for scope in scopes:
            counters = self._counters.setdefault(scope.name, _Counters())
            counters.trim(now)
            if scope.rpm is not None:
                used = len(counters.admitted)
                reset = counters.admitted[0] + WINDOW_S - now if counters.admitted else 0.0
                verdict.requests = _tightest(verdict.requests,
                                             Window(scope.rpm, scope.rpm - used - 1, reset))
                if used >= scope.rpm and verdict.allowed:
                    verdict = _deny(verdict, "requests", reset)
            if scope.tpm is not None:
                used = counters.token_sum
                reset = counters.tokens[0][0] + WINDOW_S - now if counters.tokens else 0.0
                verdict.tokens = _tightest(verdict.tokens,
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
            if spent >= spend.budget_usd:
                verdict = _deny(verdict, "budget", float(spend.ttl_s))
        if not verdict.allowed:
            if verdict.requests is not None:
                verdict.requests.remaining = max(0, verdict.requests.remaining + 1)
            return verdict
        for scope in scopes:
            if scope.rpm is not None:
                self._counters[scope.name].admitted.append(now)
        if parallel is not None:
            self._parallel[parallel[0]] = self._parallel.get(parallel[0], 0) + 1
        return verdict

    async def settle(self, scopes: list[Scope], tokens: int, parallel: str | None,
                     spend: Spend | None, cost_usd: float, member: str = "") -> None:
        now = time.time()
        if tokens > 0:
            for scope in scopes:
                if scope.tpm is not None:
                    counters = self._counters.setdefault(scope.name, _Counters())
                    counters.tokens.append((now, tokens))
                    counters.token_sum += tokens
        if parallel is not None:
            self._parallel[parallel] = max(0, self._parallel.get(parallel, 0) - 1)
        if spend is not None and cost_usd and spend.name in self._spend:
            self._spend[spend.name] += cost_usd

    async def seed_spend(self, spend: Spend, value: float) -> None:
        self._spend.setdefault(spend.name, value)

    async def close(self) -> None:
        return None


def _deny(verdict: Verdict, reason: str, retry_after_s: float) -> Verdict:
    verdict.allowed = False
    verdict.reason = reason
    verdict.retry_after_s = max(retry_after_s, 0.0)
    return verdict


# Settling: for each settled request, its token hashes (scopes with a tpm limit), its running
# requests zset and its spend key. ARGV per request: tokens, number of token keys, member
# ('' = none running), cost. Requests settled in one event-loop turn go in one call, or first
# in an admission's call of the same turn (before it counts anything).
_SETTLE_FN = """
local t = redis.call('TIME')
local function settle(k, a, a_end)
  while a < a_end do
    local tokens, n = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
    local member, cost = ARGV[a + 2], tonumber(ARGV[a + 3])
    if tokens > 0 then
      for i = k, k + n - 1 do
        redis.call('HINCRBY', KEYS[i], t[1], tokens)
        redis.call('EXPIRE', KEYS[i], 120)
      end
    end
    if member ~= '' then redis.call('ZREM', KEYS[k + n], member) end
    if cost > 0 and redis.call('EXISTS', KEYS[k + n + 1]) == 1 then
      redis.call('INCRBYFLOAT', KEYS[k + n + 1], ARGV[a + 3])
    end
    k, a = k + n + 2, a + 4
  end
end
"""

# ARGV[1]: settled requests' ARGV count, ARGV[2]: their KEYS count; both come first.
_SETTLE = _SETTLE_FN + """
settle(1, 3, 3 + tonumber(ARGV[1]))
return 1
"""

# After the settled requests: KEYS per scope (requests zset, tokens hash), then running requests
# (zset), then spend. ARGV: member, nscopes, per scope (rpm, tpm; 0 = none), parallel limit
# (0 = none), budget ("" = none).
_ADMIT = _SETTLE_FN + """
local A, K = 2 + tonumber(ARGV[1]), tonumber(ARGV[2])
settle(1, 3, A + 1)
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = 60000
local stale = 600000  -- a request still "running" after 10 minutes is a crashed replica's
local member = ARGV[A + 1]
local n = tonumber(ARGV[A + 2])
local deny, retry = '', 0
local out = {}
for i = 1, n do
  local rk, tk = KEYS[K + 2 * i - 1], KEYS[K + 2 * i]
  local rpm, tpm = tonumber(ARGV[A + 2 * i + 1]), tonumber(ARGV[A + 2 * i + 2])
  local used_r, reset_r, used_t, reset_t = 0, 0, 0, 0
  if rpm > 0 then
    redis.call('ZREMRANGEBYSCORE', rk, '-inf', now - window)
    used_r = redis.call('ZCARD', rk)
    if used_r > 0 then
      local first = redis.call('ZRANGE', rk, 0, 0, 'WITHSCORES')
      reset_r = tonumber(first[2]) + window - now
    end
    if used_r >= rpm and deny == '' then deny, retry = 'requests', reset_r end
  end
  if tpm > 0 then
    local cutoff = math.floor((now - window) / 1000)
    local buckets = redis.call('HGETALL', tk)
    local oldest = nil
    for j = 1, #buckets, 2 do
      local sec = tonumber(buckets[j])
      if sec <= cutoff then
        redis.call('HDEL', tk, buckets[j])
      else
        used_t = used_t + tonumber(buckets[j + 1])
        if oldest == nil or sec < oldest then oldest = sec end
      end
    end
    if oldest ~= nil then reset_t = (oldest + 1) * 1000 + window - now end
    if used_t >= tpm and deny == '' then deny, retry = 'tokens', reset_t end
  end
  table.insert(out, used_r); table.insert(out, reset_r)
  table.insert(out, used_t); table.insert(out, reset_t)
end
local pk, sk = KEYS[K + 2 * n + 1], KEYS[K + 2 * n + 2]
local plimit = tonumber(ARGV[A + 2 * n + 3])
local budget = ARGV[A + 2 * n + 4]
if deny == '' and plimit > 0 then
  redis.call('ZREMRANGEBYSCORE', pk, '-inf', now - stale)
  if redis.call('ZCARD', pk) >= plimit then deny, retry = 'parallel', 1000 end
end
local spent = ''
if deny == '' and budget ~= '' then
  spent = redis.call('GET', sk)
  if not spent then
    deny = 'spend_unknown'
    spent = ''
  elseif tonumber(spent) >= tonumber(budget) then
    deny, retry = 'budget', redis.call('PTTL', sk)
  end
end
if deny == '' then
  for i = 1, n do
    if tonumber(ARGV[A + 2 * i + 1]) > 0 then
      redis.call('ZADD', KEYS[K + 2 * i - 1], now, member)
      redis.call('PEXPIRE', KEYS[K + 2 * i - 1], window)
    end
  end
  if plimit > 0 then
    redis.call('ZADD', pk, now, member)
    redis.call('PEXPIRE', pk, stale)
  end
end
return {deny, tostring(retry), tostring(spent), unpack(out)}
"""


class RedisLimitStore:
    """Counters in Redis, shared by every replica that points at the same server.

    Admission is one script call (one round trip). Requests settled in one turn of the event
    loop are applied together at its end, in one call, or ride along with an admission's call
    made in the same turn: under load, settling costs a fraction of a round trip per request,
    and other replicas see the counts as soon as before.
    """

    def __init__(self, url: str, namespace: str = "sb") -> None:
        from redis.asyncio import Redis  # only needed with --redis-url
        from redis.exceptions import RedisError

        self._unreachable = RedisError  # raised to callers as LimitStoreUnavailable
        self._redis = Redis.from_url(url)
        self._ns = namespace
        self._admit = self._redis.register_script(_ADMIT)
        self._settle = self._redis.register_script(_SETTLE)
        self._pending_keys: list[str] = []
        self._pending_args: list[str | int] = []
        self._flush_handle: asyncio.Handle | None = None
        self._flushing: set[asyncio.Task[None]] = set()

    def _key(self, *parts: str) -> str:
        return ":".join((self._ns, *parts))

    async def ping(self) -> None:
        await self._redis.ping()

    async def admit(self, member: str, scopes: list[Scope], parallel: tuple[str, int] | None,
                    spend: Spend | None) -> Verdict:
        keys: list[str] = []
        args: list[str | int] = [member, len(scopes)]
        for scope in scopes:
            keys += [self._key("req", scope.name), self._key("tok", scope.name)]
            args += [scope.rpm or 0, scope.tpm or 0]
        keys += [self._key("par", parallel[0] if parallel else "-"),
                 self._key("spend", spend.name if spend else "-")]
        args += [parallel[1] if parallel else 0, repr(spend.budget_usd) if spend else ""]
        settled_keys, settled_args = self._take_pending()
        try:
            raw = await self._admit(keys=settled_keys + keys,
                                    args=[len(settled_args), len(settled_keys),
                                          *settled_args, *args])
        except self._unreachable as exc:
            self._restore_pending(settled_keys, settled_args)
            raise LimitStoreUnavailable(f"Redis: {exc}") from exc
        deny, retry_ms, spent = (v.decode() if isinstance(v, bytes) else str(v) for v in raw[:3])
        verdict = Verdict(deny == "", deny or None, max(0.0, float(retry_ms) / 1000))
        if spent:
            verdict.spent_usd = float(spent)
        if deny == "budget" and spend is not None and verdict.retry_after_s <= 0:
            verdict.retry_after_s = float(spend.ttl_s)
        counts = [int(v) for v in raw[3:]]
        taken = 1 if verdict.allowed else 0
        for i, scope in enumerate(scopes):
            used_r, reset_r, used_t, reset_t = counts[4 * i: 4 * i + 4]
            if scope.rpm is not None:
                verdict.requests = _tightest(
                    verdict.requests, Window(scope.rpm, max(0, scope.rpm - used_r - taken),
                                             reset_r / 1000))
            if scope.tpm is not None:
                verdict.tokens = _tightest(
                    verdict.tokens, Window(scope.tpm, max(0, scope.tpm - used_t), reset_t / 1000))
        return verdict

    async def settle(self, scopes: list[Scope], tokens: int, parallel: str | None,
                     spend: Spend | None, cost_usd: float, member: str = "") -> None:
        token_keys = [self._key("tok", s.name) for s in scopes if s.tpm is not None]
        self._pending_keys += [*token_keys, self._key("par", parallel or "-"),
                               self._key("spend", spend.name if spend else "-")]
        self._pending_args += [tokens, len(token_keys), member if parallel else "",
                               repr(cost_usd) if spend else "0"]
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush_soon)

    def _take_pending(self) -> tuple[list[str], list[str | int]]:
        keys, args = self._pending_keys, self._pending_args
        self._pending_keys, self._pending_args = [], []
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        return keys, args

    def _restore_pending(self, keys: list[str], args: list[str | int]) -> None:
        """A call failed before Redis answered: its settled requests wait for the next one."""
        self._pending_keys[:0] = keys
        self._pending_args[:0] = args
        if self._pending_args and self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        self._flush_handle = None
        task = asyncio.get_running_loop().create_task(self.flush())
        self._flushing.add(task)
        task.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flushing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("rate-limit counters: settling failed", exc_info=task.exception())

    async def flush(self) -> None:
        """Apply the settled requests still waiting here (one round trip)."""
        keys, args = self._take_pending()
        if not args:
            return
        await self._settle(keys=keys, args=[len(args), len(keys), *args])

    async def seed_spend(self, spend: Spend, value: float) -> None:
        try:
            await self._redis.set(self._key("spend", spend.name), repr(value), nx=True,
                                  ex=spend.ttl_s)
        except self._unreachable as exc:
            raise LimitStoreUnavailable(f"Redis: {exc}") from exc

    async def close(self) -> None:
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)
        try:
            await self.flush()
        finally:
            await self._redis.aclose()
