"""``Governance``: the database, key ring, counters, ledger and ``Governor`` built from the one
settings object, opened and closed with the server."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from switchboard.governance.governor import Governor, ModelLimits
from switchboard.governance.keys import KeyRing
from switchboard.governance.ledger import UsageLedger
from switchboard.governance.limits import LimitStore, MemoryLimitStore
from switchboard.governance.redis_limits import RedisLimitStore
from switchboard.governance.registry import KeyRegistry
from switchboard.persistence import Database, database_url
from switchboard.persistence.keys import KeyRepository
from switchboard.persistence.usage import UsageRepository
from switchboard.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Governance:
    database: Database
    governor: Governor
    registry: KeyRegistry
    usage: UsageRepository
    admin_enabled: bool

    async def open(self) -> None:
        await self.database.open()
        log.info("database: %s", self.database.describe())
        if isinstance(self.governor.limits, RedisLimitStore):
            await self.governor.limits.ping()
        if self.governor.ledger is not None:
            self.governor.ledger.start()

    async def close(self) -> None:
        try:
            await self.governor.close()
        finally:
            await self.database.close()


def open_database(settings: Settings) -> Database:
    url = settings.database_url.get_secret_value() if settings.database_url else None
    return Database(database_url(url, settings.data_dir))


def build_governance(settings: Settings, model_limits: ModelLimits | None = None) -> Governance:
    database = open_database(settings)
    keys_repo = KeyRepository(database)
    usage = UsageRepository(database)
    ring = KeyRing(
        keys_repo,
        [k.get_secret_value() for k in settings.api_keys],
        settings.admin_key.get_secret_value() if settings.admin_key else None,
        settings.key_cache_ttl_s,
    )
    limits: LimitStore = (
        RedisLimitStore(settings.redis_url.get_secret_value()) if settings.redis_url
        else MemoryLimitStore()
    )
    ledger = UsageLedger(usage, settings.ledger_flush_s) if settings.ledger else None
    governor = Governor(ring, limits, ledger, model_limits, settings.log_content, usage,
                        settings.ledger_sync)
    return Governance(database, governor, KeyRegistry(keys_repo, ring), usage,
                      admin_enabled=settings.admin_key is not None)
