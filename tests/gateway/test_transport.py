"""The upstream transport's parsing of ``Retry-After`` (no servers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from switchboard.gateway.providers.transport import retry_after


@pytest.mark.parametrize("value, expected", [
    ("2", 2.0), ("0.5", 0.5), ("-3", 0.0), (None, None), ("soon", None), ("nan", None),
    ("inf", None), ("1e400", None),
])
def test_retry_after_in_seconds(value: str | None, expected: float | None) -> None:
    headers = {} if value is None else {"Retry-After": value}
    assert retry_after(headers) == expected


def test_retry_after_as_an_http_date() -> None:
    later = datetime.now(UTC) + timedelta(seconds=30)
    assert 25 < (retry_after({"Retry-After": format_datetime(later, usegmt=True)}) or 0) <= 30
    past = datetime.now(UTC) - timedelta(hours=1)
    assert retry_after({"Retry-After": format_datetime(past, usegmt=True)}) == 0.0
