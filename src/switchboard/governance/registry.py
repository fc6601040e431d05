"""``KeyRegistry``: creating, listing, changing and revoking stored API keys (the admin API and
the ``switchboard keys`` CLI both use it). A new key's secret is returned once and never again."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from switchboard.governance.keys import (
    PREFIX_LEN,
    ApiKey,
    KeyRing,
    hash_key,
    new_secret,
)
from switchboard.persistence.keys import KeyRepository


class KeyNotFound(LookupError):
    pass


class KeyRegistry:
    def __init__(self, repo: KeyRepository, ring: KeyRing | None = None) -> None:
        self._repo = repo
        self._ring = ring

    async def create(self, values: dict[str, Any]) -> tuple[ApiKey, str]:
        """Store a new key with ``values`` (``KeyCreate`` fields); returns it and its secret."""
        secret = new_secret()
        row = {
            **_stored(values),
            "id": "key_" + secrets.token_hex(8),
            "prefix": secret[:PREFIX_LEN],
            "secret_hash": hash_key(secret),
            "created_at": datetime.now(UTC),
        }
        await self._repo.insert(row)
        self._forget(row["prefix"])
        return ApiKey.from_row(row), secret

    async def list(self, include_revoked: bool = False) -> list[ApiKey]:
        return [ApiKey.from_row(r) for r in await self._repo.list(include_revoked)]

    async def get(self, key_id: str) -> ApiKey:
        row = await self._find(key_id)
        return ApiKey.from_row(row)

    async def update(self, key_id: str, values: dict[str, Any]) -> ApiKey:
        row = await self._find(key_id)
        changed = await self._repo.update(row["id"], _stored(values))
        if changed is None:
            raise KeyNotFound(key_id)
        self._forget(row["prefix"])
        return ApiKey.from_row(changed)

    async def revoke(self, key_id: str) -> ApiKey:
        row = await self._find(key_id)
        revoked = await self._repo.revoke(row["id"], datetime.now(UTC))
        self._forget(row["prefix"])
        return ApiKey.from_row(revoked or row)

    async def _find(self, id_or_prefix: str) -> dict[str, Any]:
        """By id (``key_…``) or by the prefix shown in listings (``sk-sb-…``)."""
        row = await self._repo.get(id_or_prefix)
        if row is None and id_or_prefix.startswith("sk-sb-"):
            row = await self._repo.by_prefix(id_or_prefix[:PREFIX_LEN])
        if row is None:
            raise KeyNotFound(id_or_prefix)
        return row

    def _forget(self, prefix: str) -> None:
        if self._ring is not None:
            self._ring.forget(prefix)


def _stored(values: dict[str, Any]) -> dict[str, Any]:
    """``KeyCreate``/``KeyUpdate`` values as column values."""
    row = dict(values)
    if row.get("model_limits") is not None:
        row["model_limits"] = {
            m: (v if isinstance(v, dict) else v.model_dump())
            for m, v in row["model_limits"].items()
        }
    return row
