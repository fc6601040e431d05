"""Key format, durations, budget periods and the key ring's lookups."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from switchboard.governance.keys import (
    PREFIX_LEN,
    ApiKey,
    KeyRing,
    hash_key,
    new_secret,
)
from switchboard.protocol.durations import parse_duration, parse_expiry


def test_secrets_are_random_and_prefixed() -> None:
    keys = {new_secret() for _ in range(100)}
    assert len(keys) == 100
    assert all(k.startswith("sk-sb-") and len(k) == 46 and k.isascii() for k in keys)
    assert len({k[:PREFIX_LEN] for k in keys}) == 100


def test_durations_and_expiry() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration("2w") == timedelta(weeks=2)
    with pytest.raises(ValueError, match="duration"):
        parse_duration("monthly")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_expiry("1d", now) == datetime(2026, 1, 2, tzinfo=UTC)
    assert parse_expiry("2027-03-04") == datetime(2027, 3, 4, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_expiry("whenever")


def test_budget_periods_run_back_to_back_from_creation() -> None:
    created = datetime(2026, 1, 1, 6, tzinfo=UTC)
    key = ApiKey(id="k", name="n", prefix="p", budget_usd=5, budget_period="1d",
                 created_at=created)
    start, end = key.budget_window(datetime(2026, 1, 3, 7, tzinfo=UTC))
    assert start == datetime(2026, 1, 3, 6, tzinfo=UTC) and end == start + timedelta(days=1)
    lifetime = ApiKey(id="k", name="n", prefix="p", budget_usd=5)
    assert lifetime.budget_window(datetime.now(UTC)) == (None, None)


class FakeRepo:
    """Counts lookups, so the ring's cache shows."""

    def __init__(self, rows: dict[str, dict], delay_s: float = 0.0) -> None:
        self.rows = rows
        self.lookups = 0
        self.delay_s = delay_s

    async def by_prefix(self, prefix: str) -> dict | None:
        self.lookups += 1
        await asyncio.sleep(self.delay_s)
        return self.rows.get(prefix)

    async def any_ever(self) -> bool:
        return bool(self.rows)


def test_ring_caches_lookups_and_misses() -> None:
    secret = new_secret()
    row = {"id": "key_1", "name": "n", "prefix": secret[:PREFIX_LEN],
           "secret_hash": hash_key(secret), "created_at": datetime.now(UTC)}
    repo = FakeRepo({row["prefix"]: row})
    ring = KeyRing(repo, ["static-key-123"], "admin-key-456", ttl_s=60)  # type: ignore[arg-type]

    async def go() -> None:
        assert (await ring.authenticate([secret])).key.id == "key_1"  # type: ignore[union-attr]
        assert (await ring.authenticate([secret])).key.id == "key_1"  # type: ignore[union-attr]
        assert repo.lookups == 1
        wrong = secret[:-1] + ("a" if secret[-1] != "a" else "b")
        assert await ring.authenticate([wrong]) is None  # same prefix, wrong secret
        unknown = "sk-sb-ZZZZZZZZ" + "x" * 32
        assert await ring.authenticate([unknown]) is None
        assert await ring.authenticate([unknown]) is None
        assert repo.lookups == 2  # the miss is cached too
        ring.forget(row["prefix"])
        await ring.authenticate([secret])
        assert repo.lookups == 3
        assert (await ring.authenticate(["admin-key-456"])).admin  # type: ignore[union-attr]
        static = await ring.authenticate(["nope", "static-key-123"])
        assert static is not None and not static.key.stored  # type: ignore[union-attr]
        assert not await ring.is_open()
        assert await KeyRing(FakeRepo({}), [], None).is_open()  # type: ignore[arg-type]
    asyncio.run(go())


def test_ring_requests_that_miss_together_share_one_lookup() -> None:
    secret = new_secret()
    row = {"id": "key_2", "name": "n", "prefix": secret[:PREFIX_LEN],
           "secret_hash": hash_key(secret), "created_at": datetime.now(UTC)}
    repo = FakeRepo({row["prefix"]: row}, delay_s=0.05)
    ring = KeyRing(repo, [], None, ttl_s=60)  # type: ignore[arg-type]

    async def go() -> None:
        first = asyncio.ensure_future(ring.authenticate([secret]))
        await asyncio.sleep(0.01)
        first.cancel()  # the caller that started the read leaves: the others still get it
        found = await asyncio.gather(*(ring.authenticate([secret]) for _ in range(20)))
        assert {p.key.id for p in found} == {"key_2"}  # type: ignore[union-attr]
        assert repo.lookups == 1
        ring.forget(row["prefix"])  # changed here: the next request reads again
        await ring.authenticate([secret])
        assert repo.lookups == 2
        ring.forget(row["prefix"])
        reading = asyncio.ensure_future(ring.authenticate([secret]))
        await asyncio.sleep(0.01)
        ring.forget(row["prefix"])  # changed while that read was in flight: its answer is stale
        await reading
        await ring.authenticate([secret])
        assert repo.lookups == 4  # the stale answer was not cached
    asyncio.run(go())


def test_ring_stays_closed_once_a_key_was_stored() -> None:
    """A server that has had a stored key never turns open again, not even once every key is
    revoked: openness is decided by configuration and by whether a key ever existed."""
    secret = new_secret()
    row = {"id": "key_3", "name": "n", "prefix": secret[:PREFIX_LEN],
           "secret_hash": hash_key(secret), "created_at": datetime.now(UTC),
           "revoked_at": datetime.now(UTC)}
    repo = FakeRepo({})
    ring = KeyRing(repo, [], None, ttl_s=0)  # type: ignore[arg-type]

    async def go() -> None:
        assert await ring.is_open()  # no key given, none stored: open
        repo.rows[row["prefix"]] = row  # a key is stored (here already revoked)
        assert not await ring.is_open()
        repo.rows.clear()  # even a store that no longer lists it does not reopen the server
        assert not await ring.is_open()
    asyncio.run(go())
