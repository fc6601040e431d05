"""Durations and expiry times as the admin API and the CLI write them (``30s``, ``12h``, ``30d``,
``2w``, or an ISO date), and stored times made zone-aware. Pure functions, shared by the wire
schemas (``protocol.admin``) and the key policy (``governance.keys``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION = timedelta(days=36500)  # ~100 years: every date it leads to stays representable


def parse_duration(text: str) -> timedelta:
    """``30s``, ``15m``, ``12h``, ``1d``, ``30d``, ``2w``; at most ``MAX_DURATION``."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 1h, 1d, 30d or 2w")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{text!r} is too long: a duration is at most {MAX_DURATION.days}d")
    duration = timedelta(seconds=seconds)
    if duration.total_seconds() <= 0:
        raise ValueError(f"{text!r} is no time at all: a duration must be positive")
    return duration


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """An ISO date/time (UTC when no zone is given) or a duration from now (``30d``)."""
    now = now or datetime.now(UTC)
    if _DURATION.match(text.strip()):
        return now + parse_duration(text)
    try:
        when = datetime.fromisoformat(text.strip())
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"{text!r} is neither a date (2027-01-31) nor a duration (30d)") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without their zone; every stored time is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
