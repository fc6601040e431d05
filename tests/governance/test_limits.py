"""Rate-limit counters, in memory and in a real Redis: the same behaviour from both."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from switchboard.governance.limits import (
    LimitStore,
    LimitStoreUnavailable,
    MemoryLimitStore,
    Scope,
    Spend,
)
from switchboard.governance.redis_limits import RedisLimitStore


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest) -> Callable[[], LimitStore]:
    """Each test's store starts empty (its own Redis key namespace)."""
    def make() -> LimitStore:
        if request.param == "memory":
            return MemoryLimitStore()
        return RedisLimitStore(request.getfixturevalue("redis_url"),
                               namespace=f"test-{uuid.uuid4().hex}")
    return make


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def test_requests_per_minute_is_exact(make_store: Callable[[], LimitStore]) -> None:
    async def go() -> None:
        store = make_store()
        scope = [Scope("k:a", rpm=5)]
        verdicts = [await store.admit(f"r{i}", scope, None, None) for i in range(8)]
        assert [v.allowed for v in verdicts] == [True] * 5 + [False] * 3
        assert [v.requests.remaining for v in verdicts[:5]] == [4, 3, 2, 1, 0]
        refused = verdicts[5]
        assert refused.reason == "requests"
        assert 55 < refused.retry_after_s <= 60
        assert refused.requests.limit == 5 and refused.requests.remaining == 0
        # another key's counters are its own
        assert (await store.admit("x", [Scope("k:b", rpm=5)], None, None)).allowed
        await store.close()
    run(go())


def test_tokens_per_minute_counts_settled_usage(make_store: Callable[[], LimitStore]) -> None:
    async def go() -> None:
        store = make_store()
        scope = [Scope("k:t", tpm=100)]
        first = await store.admit("r1", scope, None, None)
        assert first.allowed and first.tokens.remaining == 100
        await store.settle(scope, 60, None, None, 0.0)
        second = await store.admit("r2", scope, None, None)
        assert second.allowed and second.tokens.remaining == 40
        await store.settle(scope, 45, None, None, 0.0)
        third = await store.admit("r3", scope, None, None)
        assert not third.allowed and third.reason == "tokens"
        assert third.tokens.remaining == 0 and third.retry_after_s > 50
        await store.close()
    run(go())


def test_tightest_scope_wins_and_refusal_counts_nothing(
    make_store: Callable[[], LimitStore],
) -> None:
    async def go() -> None:
        store = make_store()
        key, per_model = Scope("k:c", rpm=10), Scope("km:c:m", rpm=2)
        for i in range(2):
            v = await store.admit(f"r{i}", [key, per_model], None, None)
            assert v.allowed
        assert v.requests.limit == 2 and v.requests.remaining == 0
        refused = await store.admit("r3", [key, per_model], None, None)
        assert not refused.allowed
        # the key-wide scope still has 8 left: the refused request was not counted there
        other = await store.admit("r4", [key], None, None)
        assert other.allowed and other.requests.remaining == 7
        await store.close()
    run(go())


def test_parallel_requests_and_release(make_store: Callable[[], LimitStore]) -> None:
    async def go() -> None:
        store = make_store()
        assert (await store.admit("a", [], ("k:p", 2), None)).allowed
        assert (await store.admit("b", [], ("k:p", 2), None)).allowed
        third = await store.admit("c", [], ("k:p", 2), None)
        assert not third.allowed and third.reason == "parallel"
        await store.settle([], 0, "k:p", None, 0.0, "a")
        assert (await store.admit("d", [], ("k:p", 2), None)).allowed
        assert not (await store.admit("e", [], ("k:p", 2), None)).allowed
        await store.close()
    run(go())


def test_budget_spend(make_store: Callable[[], LimitStore]) -> None:
    async def go() -> None:
        store = make_store()
        spend = Spend("k:s:0", budget_usd=1.0, ttl_s=3600)
        unknown = await store.admit("a", [], None, spend)
        assert not unknown.allowed and unknown.reason == "spend_unknown"
        await store.seed_spend(spend, 0.25)
        await store.seed_spend(spend, 99.0)  # seeding never overwrites a live counter
        ok = await store.admit("b", [], None, spend)
        assert ok.allowed and ok.spent_usd == pytest.approx(0.25)
        await store.settle([], 10, None, spend, 0.8)
        over = await store.admit("c", [], None, spend)
        assert not over.allowed and over.reason == "budget"
        assert over.spent_usd == pytest.approx(1.05)
        await store.close()
    run(go())


def test_redis_settles_of_one_turn_go_in_one_call_and_reach_other_replicas(
    redis_url: str,
) -> None:
    async def go() -> None:
        namespace = f"test-{uuid.uuid4().hex}"
        replica_a = RedisLimitStore(redis_url, namespace=namespace)
        replica_b = RedisLimitStore(redis_url, namespace=namespace)
        scope = [Scope("k:shared", tpm=1000)]
        await replica_a.admit("warm", [Scope("k:warm", tpm=1)], None, None)  # loads the scripts
        await replica_a.settle([Scope("k:warm", tpm=1)], 1, None, None, 0.0)
        await replica_a.flush()
        before = await script_calls(redis_url)
        await asyncio.gather(*(replica_a.settle(scope, 40, None, None, 0.0) for _ in range(25)))
        await asyncio.sleep(0.05)  # applied after SETTLE_DELAY_S, no admission carrying them
        seen = await replica_b.admit("b", scope, None, None)
        assert not seen.allowed and seen.reason == "tokens" and seen.tokens.remaining == 0
        # 25 settled requests in one call, b's admit
        assert await script_calls(redis_url) - before == 2
        # settles still waiting when a store closes are applied, not lost
        other = [Scope("k:closing", tpm=50)]
        await replica_a.settle(other, 50, None, None, 0.0)
        await replica_a.close()
        assert not (await replica_b.admit("c", other, None, None)).allowed
        await replica_b.close()
    run(go())


def test_admissions_of_one_turn_go_in_one_redis_call_and_stay_exact(
    make_store: Callable[[], LimitStore], request: pytest.FixtureRequest,
) -> None:
    """Twenty requests arriving together on a 5 rpm key with 3 parallel slots: exactly the
    first three are admitted (the parallel limit binds first), whatever the store batches."""
    async def go() -> None:
        store = make_store()
        scope = [Scope("k:burst", rpm=5)]
        url = request.getfixturevalue("redis_url") if isinstance(store, RedisLimitStore) else None
        before = await script_calls(url)
        verdicts = await asyncio.gather(
            *(store.admit(f"r{i}", scope, ("k:burst", 3), None) for i in range(20)))
        assert [v.allowed for v in verdicts] == [True] * 3 + [False] * 17
        assert {v.reason for v in verdicts[3:]} == {"parallel"}
        assert [v.requests.remaining for v in verdicts[:3]] == [4, 3, 2]
        if isinstance(store, RedisLimitStore):
            assert await script_calls(url) - before == 1  # all twenty in one script call
        for member in ("r0", "r1", "r2"):
            await store.settle(scope, 0, "k:burst", None, 0.0, member)
        later = await asyncio.gather(
            *(store.admit(f"s{i}", scope, ("k:burst", 3), None) for i in range(4)))
        assert [v.allowed for v in later] == [True, True, False, False]
        assert [v.reason for v in later[2:]] == ["requests", "requests"]
        await store.close()
    run(go())


def test_redis_admission_whose_caller_left_gives_its_running_slot_back(redis_url: str) -> None:
    async def go() -> None:
        store = RedisLimitStore(redis_url, namespace=f"test-{uuid.uuid4().hex}")
        await store.ping()
        waiting = asyncio.ensure_future(store.admit("gone", [], ("k:left", 1), None))
        await asyncio.sleep(0)  # queued; the call is sent at the next turn
        await asyncio.sleep(0)  # ... and is in flight now
        waiting.cancel()
        await store.flush()  # the admission's reply, then the release it queued
        assert (await store.admit("next", [], ("k:left", 1), None)).allowed
        await store.close()
    run(go())


async def script_calls(redis_url: str | None) -> int:
    """Lua script calls Redis has run so far (0 for the memory store)."""
    if redis_url is None:
        return 0
    from redis.asyncio import Redis

    async with Redis.from_url(redis_url) as stats:
        info = await stats.info("commandstats")
    return sum(v["calls"] - v["failed_calls"] for k, v in info.items()
               if k.startswith("cmdstat_evalsha"))


def test_redis_settle_rides_with_the_next_admission(redis_url: str) -> None:
    """One client: a request's settle and the next request's admission cost one call."""
    async def go() -> None:
        store = RedisLimitStore(redis_url, namespace=f"test-{uuid.uuid4().hex}")
        scope = [Scope("k:one", rpm=100, tpm=1000)]
        await store.admit("r1", scope, ("k:one", 1), None)  # loads the script
        before = await script_calls(redis_url)
        await store.settle(scope, 300, "k:one", None, 0.0, "r1")
        await asyncio.sleep(0)  # the next request arrives before the settle's delay is over
        second = await store.admit("r2", scope, ("k:one", 1), None)
        assert second.allowed  # r1's parallel slot was freed first, in the same call
        assert second.tokens.remaining == 700
        assert await script_calls(redis_url) - before == 1
        await store.close()
    run(go())


def test_redis_flushed_scripts_and_dropped_connections_are_recovered(redis_url: str) -> None:
    """The script is loaded again after SCRIPT FLUSH (or a new Redis), and a connection Redis
    closed is reopened: neither costs a refusal, and the limit stays exact."""
    async def go() -> None:
        from redis.asyncio import Redis

        store = RedisLimitStore(redis_url, namespace=f"test-{uuid.uuid4().hex}")
        scope = [Scope("k:recover", rpm=4)]
        assert (await store.admit("r1", scope, None, None)).allowed
        async with Redis.from_url(redis_url) as admin:
            await admin.script_flush()
            assert (await store.admit("r2", scope, None, None)).allowed
            killed = await admin.client_kill_filter(_type="normal", skipme=True)
            assert killed >= 1  # the store's own connection among them
            assert (await store.admit("r3", scope, None, None)).allowed
        verdicts = [await store.admit(f"r{i}", scope, None, None) for i in (4, 5)]
        assert [v.allowed for v in verdicts] == [True, False]
        await store.close()
    run(go())


def test_redis_unreachable_refuses_every_waiting_check_and_never_hangs() -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def go() -> None:
        store = RedisLimitStore(f"redis://127.0.0.1:{port}", namespace="down")
        scope = [Scope("k:down", rpm=5)]
        results = await asyncio.wait_for(asyncio.gather(
            *(store.admit(f"r{i}", scope, None, None) for i in range(3)),
            return_exceptions=True), 10)
        assert all(isinstance(r, LimitStoreUnavailable) for r in results)
        await store.settle(scope, 10, None, None, 0.0)
        await asyncio.wait_for(store.flush(), 10)  # gives up on this call, keeps the settle
        with pytest.raises(LimitStoreUnavailable):  # the next check tries Redis again
            await asyncio.wait_for(store.admit("again", scope, None, None), 10)
        await asyncio.wait_for(store.close(), 10)
    run(go())


def test_redis_batches_are_capped_and_stay_exact(redis_url: str) -> None:
    async def go() -> None:
        from switchboard.governance import redis_limits

        store = RedisLimitStore(redis_url, namespace=f"test-{uuid.uuid4().hex}")
        scope = [Scope("k:many", rpm=300)]
        before = await script_calls(redis_url)
        verdicts = await asyncio.gather(
            *(store.admit(f"r{i}", scope, None, None) for i in range(2 * redis_limits.MAX_BATCH)))
        assert sum(v.allowed for v in verdicts) == 300
        assert [v.allowed for v in verdicts] == [True] * 300 + [False] * (len(verdicts) - 300)
        assert await script_calls(redis_url) - before == 2
        await store.close()
    run(go())


def test_redis_call_sent_again_after_its_reply_was_lost_counts_nothing_twice(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection drops after Redis ran the script: the store sends the call again, and the
    second run answers as the first did instead of counting tokens and spend once more."""
    async def go() -> None:
        from redis.exceptions import ConnectionError as Dropped

        store = RedisLimitStore(redis_url, namespace=f"test-{uuid.uuid4().hex}")
        scope = [Scope("k:lost", rpm=10, tpm=100)]
        spend = Spend("k:lost:0", 10.0, 3600)
        await store.seed_spend(spend, 0.0)
        assert (await store.admit("r1", scope, ("k:lost", 5), spend)).allowed
        round_trip = store._round_trip
        lost = []

        async def reply_lost(command: bytes) -> object:
            reply = await round_trip(command)  # Redis ran it...
            if not lost:
                lost.append(reply)
                await store._connection.disconnect()
                raise Dropped("connection lost before the reply")  # ...but the reply is lost
            return reply

        monkeypatch.setattr(store, "_round_trip", reply_lost)
        await store.settle(scope, 60, "k:lost", spend, 1.5, "r1")
        second = await store.admit("r2", scope, ("k:lost", 5), spend)
        monkeypatch.undo()
        assert len(lost) == 1  # the call was sent twice
        third = await store.admit("r3", scope, ("k:lost", 5), spend)
        assert second.allowed and third.allowed
        assert third.tokens.remaining == 40  # 60 tokens counted once, not 120
        assert third.spent_usd == 1.5
        assert third.requests.remaining == 7  # r1, r2 and r3
        await store.close()
    run(go())


def test_budget_holds_each_running_requests_worst_case(
    make_store: Callable[[], LimitStore],
) -> None:
    """Requests admitted together each hold their worst-case cost: on a $1 budget with a $0.40
    worst case, only three run at once (spent 0 + held 0.8 < 1 lets the third in); settling
    replaces a hold by the actual cost, and the spend counter ends within one worst case."""
    async def go() -> None:
        store = make_store()
        spend = Spend("k:held", 1.0, 3600)
        await store.seed_spend(spend, 0.0)
        verdicts = await asyncio.gather(*(store.admit(f"r{i}", [], None, spend, 0, 0.40)
                                          for i in range(10)))
        assert [v.allowed for v in verdicts] == [True] * 3 + [False] * 7
        refused = verdicts[3]
        assert refused.reason == "budget" and refused.retry_after_s <= 1
        assert refused.spent_usd == 0.0 and refused.reserved_usd == pytest.approx(1.2)
        for i in range(3):  # each cost less than its worst case
            await store.settle([], 0, None, spend, 0.30, f"r{i}")
        assert (await store.admit("r3", [], None, spend, 0, 0.40)).allowed  # 0.9 < 1
        held = await store.admit("r4", [], None, spend, 0, 0.40)
        assert not held.allowed and held.spent_usd == pytest.approx(0.9)
        assert held.reserved_usd == pytest.approx(0.4)
        await store.settle([], 0, None, spend, 0.35, "r3")  # spent 1.25: over by < 0.40
        over = await store.admit("r5", [], None, spend, 0, 0.40)
        assert not over.allowed and over.spent_usd == pytest.approx(1.25)
        assert over.reserved_usd == 0.0 and over.retry_after_s > 1
        await store.close()
    run(go())


def test_tpm_holds_each_running_requests_estimate(make_store: Callable[[], LimitStore]) -> None:
    async def go() -> None:
        store = make_store()
        scope = [Scope("k:held-tokens", tpm=100)]
        verdicts = await asyncio.gather(*(store.admit(f"r{i}", scope, None, None, 40)
                                          for i in range(5)))
        assert [v.allowed for v in verdicts] == [True] * 3 + [False] * 2
        assert verdicts[3].reason == "tokens" and verdicts[3].tokens.remaining == 0
        for i in range(3):  # each used 10 tokens: the holds are replaced by 30 in all
            await store.settle(scope, 10, None, None, 0.0, f"r{i}")
        again = await store.admit("r-next", scope, None, None, 40)
        assert again.allowed and again.tokens.remaining == 70
        await store.close()
    run(go())
