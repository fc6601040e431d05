"""API keys: their format, their hashes, their policy (``ApiKey``) and ``KeyRing``, which
authenticates a presented key against the keys given at start and the stored ones.

A stored key is ``sk-sb-`` + 8 lookup characters + 32 secret characters (base62, 238 random
bits). The first 14 characters (the prefix) find the row; the SHA-256 of the whole key is compared
in constant time. A fast hash is right here: keys are long random strings, not passwords. Lookups
are cached for ``ttl_s`` seconds, so a key revoked on another replica stops working within that;
requests that miss the cache together share one database query.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import string
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from switchboard.persistence.keys import KeyRepository
from switchboard.protocol.durations import aware, parse_duration

KEY_PREFIX = "sk-sb-"
PREFIX_LEN = len(KEY_PREFIX) + 8
_ALPHABET = string.ascii_letters + string.digits


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_secret() -> str:
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(40))


@dataclass(frozen=True)
class ModelLimit:
    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True)
class ApiKey:
    """A key's identity and policy. ``None`` limits mean unlimited."""

    id: str
    name: str
    prefix: str
    models: tuple[str, ...] | None = None
    rpm: int | None = None
    tpm: int | None = None
    model_limits: dict[str, ModelLimit] = field(default_factory=dict)
    max_parallel: int | None = None
    budget_usd: float | None = None
    budget_period: str | None = None
    expires_at: datetime | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    revoked_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    stored: bool = True  # False for keys given at start (--api-key), which have no limits

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ApiKey:
        return cls(
            id=row["id"], name=row["name"], prefix=row["prefix"],
            models=tuple(row["models"]) if row.get("models") is not None else None,
            rpm=row.get("rpm"), tpm=row.get("tpm"),
            model_limits={m: ModelLimit(v.get("rpm"), v.get("tpm"))
                          for m, v in (row.get("model_limits") or {}).items()},
            max_parallel=row.get("max_parallel"), budget_usd=row.get("budget_usd"),
            budget_period=row.get("budget_period"), expires_at=aware(row.get("expires_at")),
            created_at=aware(row["created_at"]) or datetime.now(UTC),
            revoked_at=aware(row.get("revoked_at")), metadata=row.get("metadata") or {},
        )

    def public(self) -> dict[str, Any]:
        """What the admin API and the CLI show (never a secret or its hash)."""
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id, "name": self.name, "prefix": self.prefix,
            "models": list(self.models) if self.models is not None else None,
            "rpm": self.rpm, "tpm": self.tpm,
            "model_limits": {m: {"rpm": v.rpm, "tpm": v.tpm} for m, v in self.model_limits.items()},
            "max_parallel": self.max_parallel, "budget_usd": self.budget_usd,
            "budget_period": self.budget_period, "expires_at": iso(self.expires_at),
            "created_at": iso(self.created_at), "revoked_at": iso(self.revoked_at),
            "metadata": self.metadata,
        }

    def allows(self, *names: str) -> bool:
        return self.models is None or any(n in self.models for n in names)

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def budget_window(self, now: datetime) -> tuple[datetime | None, datetime | None]:
        """(start, end) of the current budget period: periods run back to back from the key's
        creation; no period = one window for the key's whole life."""
        if not self.budget_period:
            return None, None
        try:
            period = parse_duration(self.budget_period)
        except ValueError:  # stored before periods were capped: longer than any key's life
            return None, None
        elapsed = (now - self.created_at) // period
        start = self.created_at + elapsed * period
        return start, start + period


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key (stored or given at start), the admin, or nobody (open server)."""

    key: ApiKey | None = None
    admin: bool = False

    @property
    def key_id(self) -> str | None:
        return self.key.id if self.key else None


class KeyRing:
    """Authenticates presented keys. Keys given at start and the admin key are held as hashes;
    stored keys are looked up by prefix (cached, misses too, for ``ttl_s``)."""

    def __init__(
        self, repo: KeyRepository | None, static_keys: list[str], admin_key: str | None,
        ttl_s: float = 5.0,
    ) -> None:
        self._repo = repo
        self._static = [(hash_key(k), ApiKey(id=f"cli-{hash_key(k)[:10]}", name="--api-key",
                                               prefix=k[:6] + "…", stored=False))
                        for k in static_keys]
        self._admin = hash_key(admin_key) if admin_key else None
        self._ttl = ttl_s
        self._cache: dict[str, tuple[float, ApiKey | None, str | None]] = {}
        self._loading: dict[str, asyncio.Future[tuple[ApiKey | None, str | None]]] = {}
        self._closed = bool(self._static or self._admin)
        self._checked_at = -1e9

    async def is_open(self) -> bool:
        """Whether the server accepts requests without a key: only while it was given no key
        (``--api-key``, ``--admin-key``) and no key was ever stored. Once a stored key has
        existed the server stays closed for good, even after its last key is revoked or has
        expired: a governed server never silently turns into an open one."""
        if self._closed:
            return False
        if self._repo is None:
            return True
        now = time.monotonic()
        if now - self._checked_at > self._ttl:
            self._closed = await self._repo.any_ever()
            self._checked_at = now
        return not self._closed

    def forget(self, prefix: str) -> None:
        """Drop a cached lookup (after this process created, changed or revoked the key)."""
        self._cache.pop(prefix, None)
        self._loading.pop(prefix, None)  # a read in flight may predate the change
        self._checked_at = -1e9

    async def authenticate(self, presented: list[str]) -> Principal | None:
        for candidate in presented:
            digest = hash_key(candidate)
            if self._admin is not None and hmac.compare_digest(digest, self._admin):
                return Principal(admin=True)
            for known, key in self._static:
                if hmac.compare_digest(digest, known):
                    return Principal(key=key)
            if candidate.startswith(KEY_PREFIX) and len(candidate) > PREFIX_LEN:
                key, stored_hash = await self._lookup(candidate[:PREFIX_LEN])
                if key is not None and stored_hash and hmac.compare_digest(digest, stored_hash):
                    return Principal(key=key)
        return None

    async def _lookup(self, prefix: str) -> tuple[ApiKey | None, str | None]:
        cached = self._cache.get(prefix)
        if cached is not None and time.monotonic() - cached[0] < self._ttl:
            return cached[1], cached[2]
        loading = self._loading.get(prefix)
        if loading is None:  # the first miss reads the key; the others share its answer
            loading = self._loading[prefix] = asyncio.ensure_future(self._load(prefix))
            loading.add_done_callback(lambda done: self._loaded(prefix, done))
        return await asyncio.shield(loading)  # a caller that leaves does not cancel the read

    async def _load(self, prefix: str) -> tuple[ApiKey | None, str | None]:
        now = time.monotonic()
        row = await self._repo.by_prefix(prefix) if self._repo is not None else None
        key = ApiKey.from_row(row) if row is not None else None
        entry = (now, key, row["secret_hash"] if row else None)
        if self._loading.get(prefix) is asyncio.current_task():  # not forgotten meanwhile
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[prefix] = entry
        return entry[1], entry[2]

    def _loaded(self, prefix: str, done: asyncio.Future[tuple[ApiKey | None, str | None]]) -> None:
        if self._loading.get(prefix) is done:
            del self._loading[prefix]
        if not done.cancelled():
            done.exception()  # marked as seen: every caller that still waits gets it raised
