"""``RedisLimitStore``: the rate-limit counters in Redis, shared by every replica that points at
the same server, so that together they enforce one exact limit.

Everything is one Lua script, atomic across replicas and timed on the Redis server's clock. The
admissions and settled requests of one event-loop turn go to Redis together, in one call, and
while a call is in flight the next turn's work waits for it and then goes as the next call;
settled requests alone wait up to ``SETTLE_DELAY_S`` for an admission to ride with. Under load a
limit check therefore costs a fraction of a round trip; with one client it costs one round trip.
Inside the script the admissions are checked one after another, so batching never lets one through
that a check of its own would have refused.

Since calls go one at a time, they use one connection of their own: redis-py's ``Connection``
(which handles the URL's password, database and TLS, and parses replies with hiredis), fed a
command packed here, skipping the client's connection pool, retry wrapper and per-call packing,
which cut the client CPU of a limit check (``bench/governance.py`` times one alone).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from switchboard.governance.limits import (
    LimitStoreUnavailable,
    Scope,
    Spend,
    Verdict,
    Window,
    tightest,
)

log = logging.getLogger(__name__)

# How long settled requests may wait for an admission to carry them to Redis. Other replicas see
# the tokens, cost and freed parallel slot that much later; this replica's own next admission
# always applies them first.
SETTLE_DELAY_S = 0.002
MAX_BATCH = 256  # admissions per call; more wait for the next one

# KEYS[1], ARGV[1]: this store's last-call key and the call's id (a call sent again after a
# dropped connection gets the reply it got the first time, and changes nothing twice).
# ARGV[2], ARGV[3], ARGV[4]: the settled requests' ARGV and KEYS counts, the number of
# admissions. Then each settled request (KEYS: per scope with a tpm limit its tokens hash and its
# reservations hash; its running-requests zset; its spend key; its spend reservations hash.
# ARGV: tokens, number of tpm scopes, member, cost), then each admission (KEYS: per scope its
# requests zset, tokens hash and token reservations hash, then running-requests zset, spend key,
# spend reservations hash. ARGV: member, number of scopes, per scope rpm and tpm (0 = none),
# parallel limit (0 = none), budget ('' = none), tokens and cost to reserve). Returns one reply
# per admission: deny reason ('' = admitted), retry after (ms), spend, spend reserved, then per
# scope requests used, their reset (ms), tokens used (reserved included), their reset (ms).
# A reservation is a hash field (the admission's member) holding "amount:ms since epoch"; one
# older than ``stale`` is a crashed replica's and is dropped.
_SCRIPT = """
local last = redis.call('GET', KEYS[1])
if last then
  local sep = string.find(last, ':', 1, true)
  if string.sub(last, 1, sep - 1) == ARGV[1] then
    return cmsgpack.unpack(string.sub(last, sep + 1))
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = 60000
local stale = 600000  -- a request still "running" after 10 minutes is a crashed replica's

local function held(h)
  local fields = redis.call('HGETALL', h)
  local sum = 0
  for j = 1, #fields, 2 do
    local v = fields[j + 1]
    local sep = string.find(v, ':', 1, true)
    if tonumber(string.sub(v, sep + 1)) <= now - stale then
      redis.call('HDEL', h, fields[j])
    else
      sum = sum + tonumber(string.sub(v, 1, sep - 1))
    end
  end
  return sum
end

local function settle(k, a, a_end)
  while a < a_end do
    local tokens, n = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
    local member, cost = ARGV[a + 2], tonumber(ARGV[a + 3])
    for i = 0, n - 1 do
      if tokens > 0 then
        redis.call('HINCRBY', KEYS[k + 2 * i], t[1], tokens)
        redis.call('EXPIRE', KEYS[k + 2 * i], 120)
      end
      if member ~= '' then redis.call('HDEL', KEYS[k + 2 * i + 1], member) end
    end
    local pk, sk, rk = KEYS[k + 2 * n], KEYS[k + 2 * n + 1], KEYS[k + 2 * n + 2]
    if member ~= '' then
      redis.call('ZREM', pk, member)
      redis.call('HDEL', rk, member)
    end
    if cost > 0 and redis.call('EXISTS', sk) == 1 then
      redis.call('INCRBYFLOAT', sk, ARGV[a + 3])
    end
    k, a = k + 2 * n + 3, a + 4
  end
end

local function admit(k, a)
  local member, n = ARGV[a], tonumber(ARGV[a + 1])
  local deny, retry = '', 0
  local out = {}
  for i = 1, n do
    local rk, tk, hk = KEYS[k + 3 * i - 3], KEYS[k + 3 * i - 2], KEYS[k + 3 * i - 1]
    local rpm, tpm = tonumber(ARGV[a + 2 * i]), tonumber(ARGV[a + 2 * i + 1])
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
      used_t = used_t + held(hk)
      if used_t >= tpm and deny == '' then deny, retry = 'tokens', reset_t end
    end
    table.insert(out, used_r); table.insert(out, reset_r)
    table.insert(out, used_t); table.insert(out, reset_t)
  end
  local pk, sk, sr = KEYS[k + 3 * n], KEYS[k + 3 * n + 1], KEYS[k + 3 * n + 2]
  local plimit, budget = tonumber(ARGV[a + 2 * n + 2]), ARGV[a + 2 * n + 3]
  local rtokens, rcost = tonumber(ARGV[a + 2 * n + 4]), tonumber(ARGV[a + 2 * n + 5])
  if deny == '' and plimit > 0 then
    redis.call('ZREMRANGEBYSCORE', pk, '-inf', now - stale)
    if redis.call('ZCARD', pk) >= plimit then deny, retry = 'parallel', 1000 end
  end
  local spent, reserved = '', 0
  if deny == '' and budget ~= '' then
    spent = redis.call('GET', sk)
    if not spent then
      deny, spent = 'spend_unknown', ''
    else
      reserved = held(sr)
      if tonumber(spent) >= tonumber(budget) then
        deny, retry = 'budget', redis.call('PTTL', sk)
      elseif tonumber(spent) + reserved >= tonumber(budget) then
        deny, retry = 'budget', 1000
      end
    end
  end
  if deny == '' then
    for i = 1, n do
      if tonumber(ARGV[a + 2 * i]) > 0 then
        redis.call('ZADD', KEYS[k + 3 * i - 3], now, member)
        redis.call('PEXPIRE', KEYS[k + 3 * i - 3], window)
      end
      if tonumber(ARGV[a + 2 * i + 1]) > 0 and rtokens > 0 then
        redis.call('HSET', KEYS[k + 3 * i - 1], member, rtokens .. ':' .. now)
        redis.call('PEXPIRE', KEYS[k + 3 * i - 1], stale)
      end
    end
    if budget ~= '' and rcost > 0 then
      redis.call('HSET', sr, member, ARGV[a + 2 * n + 5] .. ':' .. now)
      redis.call('PEXPIRE', sr, stale)
    end
    if plimit > 0 then
      redis.call('ZADD', pk, now, member)
      redis.call('PEXPIRE', pk, stale)
    end
  end
  return {deny, tostring(retry), tostring(spent), tostring(reserved), unpack(out)},
    k + 3 * n + 3, a + 2 * n + 6
end

local S, SK = tonumber(ARGV[2]), tonumber(ARGV[3])
settle(2, 5, 5 + S)
local replies, k, a = {}, SK + 2, 5 + S
for j = 1, tonumber(ARGV[4]) do
  replies[j], k, a = admit(k, a)
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. cmsgpack.pack(replies), 'PX', stale)
return replies
"""


def _pack(*parts: bytes | str | int) -> bytes:
    """A command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


@dataclass
class _Pending:
    """An admission waiting for the next call."""

    member: str
    keys: list[str]
    args: list[str | int]
    scopes: list[Scope]
    parallel: str | None
    spend: Spend | None
    future: asyncio.Future[Verdict]


class RedisLimitStore:
    """Counters in Redis. See the module's docstring for how calls are batched."""

    def __init__(self, url: str, namespace: str = "sb") -> None:
        from redis.asyncio import Redis  # only needed with --redis-url
        from redis.exceptions import ConnectionError as Dropped
        from redis.exceptions import NoScriptError, RedisError, ResponseError

        self._unreachable = RedisError  # raised to callers as LimitStoreUnavailable
        self._no_script, self._error_reply, self._dropped = NoScriptError, ResponseError, Dropped
        self._redis = Redis.from_url(url)
        self._connection = self._redis.connection_pool.make_connection()  # calls go one at a time
        self._ns = namespace
        self._sha = hashlib.sha1(_SCRIPT.encode()).hexdigest().encode()
        self._last_call = self._key("call", uuid.uuid4().hex)  # this store's, read by its resends
        self._calls = itertools.count()
        self._admissions: list[_Pending] = []
        self._settled_keys: list[str] = []
        self._settled_args: list[str | int] = []
        self._sender: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def _key(self, *parts: str) -> str:
        return ":".join((self._ns, *parts))

    async def ping(self) -> None:
        await self._redis.ping()

    async def admit(self, member: str, scopes: list[Scope], parallel: tuple[str, int] | None,
                    spend: Spend | None, reserve_tokens: int = 0,
                    reserve_usd: float = 0.0) -> Verdict:
        keys: list[str] = []
        args: list[str | int] = [member, len(scopes)]
        for scope in scopes:
            keys += [self._key("req", scope.name), self._key("tok", scope.name),
                     self._key("rtok", scope.name)]
            args += [scope.rpm or 0, scope.tpm or 0]
        keys += [self._key("par", parallel[0] if parallel else "-"),
                 self._key("spend", spend.name if spend else "-"),
                 self._key("rspend", spend.name if spend else "-")]
        args += [parallel[1] if parallel else 0, repr(spend.budget_usd) if spend else "",
                 max(0, int(reserve_tokens)), repr(max(0.0, float(reserve_usd)))]
        future = asyncio.get_running_loop().create_future()
        self._admissions.append(
            _Pending(member, keys, args, scopes, parallel[0] if parallel else None, spend, future))
        self._wake()
        return await future  # cancelled while waiting: never sent, or released (_deliver)

    async def settle(self, scopes: list[Scope], tokens: int, parallel: str | None,
                     spend: Spend | None, cost_usd: float, member: str = "") -> None:
        """Queued for the next call: the one after the call in flight, the next admission's, or
        one of their own ``SETTLE_DELAY_S`` later (with one client, the next request's admission
        usually comes first and carries them)."""
        self._queue_settle(scopes, tokens, parallel, spend, cost_usd, member)
        if self._sender is None and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(SETTLE_DELAY_S, self._wake)

    def _queue_settle(self, scopes: list[Scope], tokens: int, parallel: str | None,
                      spend: Spend | None, cost_usd: float, member: str) -> None:
        token_keys = [k for s in scopes if s.tpm is not None
                      for k in (self._key("tok", s.name), self._key("rtok", s.name))]
        spend_name = spend.name if spend else "-"
        self._settled_keys += [*token_keys, self._key("par", parallel or "-"),
                               self._key("spend", spend_name), self._key("rspend", spend_name)]
        self._settled_args += [tokens, len(token_keys) // 2, member,
                               repr(cost_usd) if spend else "0"]

    def _wake(self) -> None:
        """Start the sender unless it runs: its first call goes at the next turn, so every
        admission and settle of this turn is in it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send_all())

    async def _send_all(self) -> None:
        try:
            while self._admissions or self._settled_args:
                if not await self._send():
                    break  # Redis is unreachable: the settles wait for the next call
        finally:
            self._sender = None

    async def _send(self) -> bool:
        """One call with everything waiting; False when Redis could not be reached."""
        batch = [p for p in self._admissions[:MAX_BATCH] if not p.future.done()]
        del self._admissions[:MAX_BATCH]
        settled_keys, settled_args = self._settled_keys, self._settled_args
        self._settled_keys, self._settled_args = [], []
        keys = [self._last_call, *settled_keys, *(k for p in batch for k in p.keys)]
        args = [next(self._calls), len(settled_args), len(settled_keys), len(batch),
                *settled_args, *(a for p in batch for a in p.args)]
        try:
            replies = await self._run_script(keys, args) if batch or settled_args else []
        except BaseException as exc:
            # not applied (or not known to be): the settles go again with the next call
            self._settled_keys[:0] = settled_keys
            self._settled_args[:0] = settled_args
            if isinstance(exc, asyncio.CancelledError):  # the server is stopping
                for pending in batch:
                    pending.future.cancel()
                raise
            log.error("rate-limit counters: Redis call failed: %s", exc,
                      exc_info=not isinstance(exc, self._unreachable))
            self._fail(batch, exc)
            return False
        if len(replies) != len(batch):  # never expected: fail them rather than guess
            self._fail(batch, RuntimeError(f"{len(replies)} replies for {len(batch)} checks"))
            return True
        for pending, reply in zip(batch, replies):
            try:
                self._deliver(pending, reply)
            except Exception as exc:
                log.exception("rate-limit counters: unreadable reply %r", reply)
                self._fail([pending], exc)
        return True

    async def _run_script(self, keys: list[str], args: list[str | int]) -> list:
        command = _pack(b"EVALSHA", self._sha, len(keys), *keys, *args)
        try:
            return await self._call(command)
        except self._no_script:  # a new or flushed Redis: load the script, then run it
            await self._call(_pack(b"SCRIPT", b"LOAD", _SCRIPT))
            return await self._call(command)

    async def _call(self, command: bytes) -> Any:
        """One command and its reply. A dropped connection (Redis restarted, or closed it while
        idle) is reconnected and the command sent once more, as redis-py's client retries it.
        Redis may have run it before the connection dropped: the script then finds its call id
        and answers as it did, so nothing is counted twice."""
        try:
            return await self._round_trip(command)
        except self._dropped:
            return await self._round_trip(command)

    async def _round_trip(self, command: bytes) -> Any:
        connection = self._connection
        try:
            await connection.send_packed_command(command, check_health=False)
            return await connection.read_response()
        except BaseException as exc:
            if not isinstance(exc, self._error_reply):  # an error reply keeps them in step
                await connection.disconnect()  # no half-read reply for the next call
            raise

    @staticmethod
    def _fail(batch: list[_Pending], exc: BaseException) -> None:
        """Each waiting admission gets the error its caller answers 503 for."""
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(LimitStoreUnavailable(f"Redis: {exc}"))

    def _deliver(self, pending: _Pending, reply: list[bytes | int]) -> None:
        deny, retry_ms, spent, reserved = (v.decode() if isinstance(v, bytes) else str(v)
                                           for v in reply[:4])
        verdict = Verdict(deny == "", deny or None, max(0.0, float(retry_ms) / 1000))
        if spent:
            verdict.spent_usd = float(spent)
        verdict.reserved_usd = float(reserved)
        if deny == "budget" and pending.spend is not None and verdict.retry_after_s <= 0:
            verdict.retry_after_s = float(pending.spend.ttl_s)
        counts = [int(v) for v in reply[4:]]
        taken = 1 if verdict.allowed else 0
        for i, scope in enumerate(pending.scopes):
            used_r, reset_r, used_t, reset_t = counts[4 * i: 4 * i + 4]
            if scope.rpm is not None:
                verdict.requests = tightest(
                    verdict.requests, Window(scope.rpm, max(0, scope.rpm - used_r - taken),
                                             reset_r / 1000))
            if scope.tpm is not None:
                verdict.tokens = tightest(
                    verdict.tokens, Window(scope.tpm, max(0, scope.tpm - used_t), reset_t / 1000))
        if not pending.future.done():
            pending.future.set_result(verdict)
        elif verdict.allowed:
            # its caller left while the call was in flight: free what it took
            self._queue_settle(pending.scopes, 0, pending.parallel, pending.spend, 0.0,
                               pending.member)
            self._wake()

    async def flush(self) -> None:
        """Wait until everything queued here has been applied (or Redis found unreachable)."""
        self._wake()
        sender = self._sender
        if sender is not None:
            await asyncio.shield(sender)

    async def seed_spend(self, spend: Spend, value: float) -> None:
        try:
            await self._redis.set(self._key("spend", spend.name), repr(value), nx=True,
                                  ex=spend.ttl_s)
        except self._unreachable as exc:
            raise LimitStoreUnavailable(f"Redis: {exc}") from exc

    async def close(self) -> None:
        try:
            await self.flush()
        finally:
            await self._connection.disconnect()
            await self._redis.aclose()
