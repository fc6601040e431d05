"""``switchboard keys create|list|update|revoke``: manage stored API keys straight in the
database (the same one the server uses: ``--data-dir``, ``--database-url`` or ``--config``).

A running server sees a change within ``key_cache_ttl_s`` (5 s by default).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from switchboard.governance.assembly import open_database
from switchboard.governance.keys import ApiKey
from switchboard.governance.registry import KeyNotFound, KeyRegistry
from switchboard.persistence.keys import KeyRepository
from switchboard.protocol.admin import KeyCreate, KeyUpdate
from switchboard.settings import Settings

LIMIT_FLAGS = ("models", "rpm", "tpm", "max_parallel", "budget_usd", "budget_period", "expires_at")


def add_keys_command(commands: Any) -> None:
    keys = commands.add_parser("keys", help="create, list, update and revoke API keys")
    actions = keys.add_subparsers(dest="action", required=True)
    for name, help_ in (("create", "create a key (its secret is printed once)"),
                        ("update", "change a key's name, models or limits")):
        action = actions.add_parser(name, help=help_)
        if name == "update":
            action.add_argument("k_id", metavar="KEY", help="key id (key_…) or prefix (sk-sb-…)")
        action.add_argument("--name", dest="k_name", required=name == "create")
        action.add_argument("--models", dest="k_models",
                            help="comma-separated model names the key may use (default: all)")
        action.add_argument("--rpm", dest="k_rpm", type=int, help="requests per minute")
        action.add_argument("--tpm", dest="k_tpm", type=int, help="tokens per minute")
        action.add_argument("--max-parallel", dest="k_max_parallel", type=int,
                            help="requests at once")
        action.add_argument("--budget-usd", dest="k_budget_usd", type=float, help="spend cap")
        action.add_argument("--budget-period", dest="k_budget_period",
                            help="budget period: 1h, 1d, 7d, 30d … (default: the key's life)")
        action.add_argument("--expires", dest="k_expires_at",
                            help="expiry: a date (2027-01-31) or a duration (30d)")
        action.add_argument("--json", dest="k_json", action="store_true", help="print JSON")
        _storage(action)
    listing = actions.add_parser("list", help="list keys")
    listing.add_argument("--all", dest="k_all", action="store_true", help="include revoked keys")
    listing.add_argument("--json", dest="k_json", action="store_true", help="print JSON")
    _storage(listing)
    revoke = actions.add_parser("revoke", help="revoke a key")
    revoke.add_argument("k_id", metavar="KEY", help="key id (key_…) or prefix (sk-sb-…)")
    revoke.add_argument("--json", dest="k_json", action="store_true", help="print JSON")
    _storage(revoke)


def _storage(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="SQLite database folder")
    parser.add_argument("--database-url", help="postgresql+asyncpg://user:pass@host/db")
    parser.add_argument("--config", type=Path, help="YAML config file")


def run_keys_command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(settings, args))
    except KeyNotFound as exc:
        print(f"switchboard: no API key {exc.args[0]!r}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        print(f"switchboard: invalid key settings:\n{exc}", file=sys.stderr)
        return 2


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    database = open_database(settings)
    await database.open()
    registry = KeyRegistry(KeyRepository(database))
    try:
        if args.action == "create":
            spec = KeyCreate.model_validate(_limits(args))
            key, secret = await registry.create(spec.model_dump(exclude_unset=True))
            _show([key], args.k_json, secret)
            if not args.k_json:
                print(f"\n  {secret}\n\nThe key is shown once; only its hash is stored.")
        elif args.action == "update":
            spec = KeyUpdate.model_validate(_limits(args))
            _show([await registry.update(args.k_id, spec.model_dump(exclude_unset=True))],
                  args.k_json)
        elif args.action == "list":
            _show(await registry.list(include_revoked=args.k_all), args.k_json)
        elif args.action == "revoke":
            _show([await registry.revoke(args.k_id)], args.k_json)
    finally:
        await database.close()
    return 0


def _limits(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if getattr(args, "k_name", None) is not None:
        values["name"] = args.k_name
    for flag in LIMIT_FLAGS:
        value = getattr(args, f"k_{flag}", None)
        if value is None:
            continue
        if flag == "models":
            value = [m.strip() for m in value.split(",") if m.strip()]
        values[flag] = value
    return values


def _show(keys: list[ApiKey], as_json: bool, secret: str | None = None) -> None:
    if as_json:
        data = [k.public() for k in keys]
        if secret is not None:
            data[0]["key"] = secret
        print(json.dumps(data if len(data) != 1 or secret is None else data[0], indent=2))
        return
    columns = ("id", "name", "prefix", "models", "rpm", "tpm", "max_parallel", "budget_usd",
               "budget_period", "expires_at", "revoked_at")
    rows = [[_cell(k.public()[c]) for c in columns] for k in keys]
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c)
              for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)[:19] if isinstance(value, str) and "T" in value else str(value)
