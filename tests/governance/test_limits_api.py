"""Limits as the ``openai`` SDK sees them: 429 ``RateLimitError`` with ``Retry-After`` and
OpenAI's ``x-ratelimit-*`` headers, per key, per key and model, per model, parallel requests and
budgets (``insufficient_quota``)."""

from __future__ import annotations

import threading
from contextlib import ExitStack
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import RunningServer, missing_service, stop_server
from tests.gateway.upstream import FakeUpstream
from tests.governance.conftest import (
    COST_PER_PAID_ANSWER,
    MSG,
    STATIC_KEY,
    TOKENS_PER_ANSWER,
    Admin,
    sdk,
    start_governed,
)
from tests.services import ServiceMissing, redis_server


def test_requests_per_minute(governed: RunningServer, admin: Admin) -> None:
    client = sdk(governed, admin.create_key(name="rpm", rpm=3)["key"])
    remaining = []
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(model="free", messages=MSG)
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        remaining.append(raw.headers["x-ratelimit-remaining-requests"])
        assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
    assert remaining == ["2", "1", "0"]
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="free", messages=MSG)
    response = err.value.response
    assert response.status_code == 429
    assert 50 <= int(response.headers["retry-after"]) <= 60
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert err.value.body["type"] == "requests" and err.value.body["code"] == "rate_limit_exceeded"
    assert "RPM" in err.value.body["message"]


def test_tokens_per_minute(governed: RunningServer, admin: Admin) -> None:
    client = sdk(governed, admin.create_key(name="tpm", tpm=30)["key"])
    first = client.chat.completions.with_raw_response.create(model="free", messages=MSG)
    assert first.headers["x-ratelimit-limit-tokens"] == "30"
    assert first.headers["x-ratelimit-remaining-tokens"] == "30"
    second = client.chat.completions.with_raw_response.create(model="free", messages=MSG)
    assert second.headers["x-ratelimit-remaining-tokens"] == str(30 - TOKENS_PER_ANSWER)
    with pytest.raises(openai.RateLimitError) as err:  # 34 tokens used of 30
        client.chat.completions.create(model="free", messages=MSG)
    assert err.value.body["type"] == "tokens"
    assert err.value.response.headers["x-ratelimit-remaining-tokens"] == "0"


def test_streamed_tokens_count_too(governed: RunningServer, admin: Admin) -> None:
    client = sdk(governed, admin.create_key(name="tpm-stream", tpm=15)["key"])
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="free", messages=MSG, stream=True) if c.choices)
    assert text
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="free", messages=MSG)


def test_per_model_limits(governed: RunningServer, admin: Admin) -> None:
    key = admin.create_key(name="per-model", model_limits={"paid": {"rpm": 1}})["key"]
    client = sdk(governed, key)
    client.chat.completions.create(model="paid-alias", messages=MSG)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="paid", messages=MSG)
    assert client.chat.completions.create(model="free", messages=MSG).choices  # other model
    # the "limited" model allows 2 requests a minute across all keys together
    other = sdk(governed, admin.create_key(name="other")["key"])
    client.chat.completions.create(model="limited", messages=MSG)
    other.chat.completions.create(model="limited", messages=MSG)
    with pytest.raises(openai.RateLimitError):
        other.chat.completions.create(model="limited", messages=MSG)


def test_budget(governed: RunningServer, admin: Admin) -> None:
    created = admin.create_key(name="budget", budget_usd=30, budget_period="1d")
    client = sdk(governed, created["key"])
    for _ in range(3):  # $11 each: 0 → 11 → 22 → 33
        client.chat.completions.create(model="paid", messages=MSG)
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="paid", messages=MSG)
    assert err.value.body["code"] == "insufficient_quota"
    assert err.value.body["type"] == "insufficient_quota"
    assert "$33.0000 of its $30.0000" in err.value.body["message"]
    spent = admin.usage(key_id=created["id"], group_by="key")["data"][0]
    assert spent["cost_usd"] == pytest.approx(3 * COST_PER_PAID_ANSWER)
    assert spent["requests"] == 4 and spent["errors"] == 1  # the refusal is in the ledger too
    # raising the budget lets it through again
    admin.http.patch(f"/admin/keys/{created['id']}", json={"budget_usd": 100})
    assert client.chat.completions.create(model="paid", messages=MSG).choices


def test_parallel_requests(governed: RunningServer, admin: Admin, fake: FakeUpstream) -> None:
    key = admin.create_key(name="parallel", max_parallel=1)["key"]
    fake.script.append("stall")  # the first stream sends two chunks, then hangs
    headers = {"authorization": f"Bearer {key}"}
    body = {"model": "free", "messages": MSG, "stream": True}
    with httpx.Client(timeout=30) as http:
        with http.stream("POST", governed.v1 + "/chat/completions", json=body,
                         headers=headers) as first:
            assert first.status_code == 200
            lines = first.iter_lines()  # kept: a dropped iterator closes the connection
            next(lines)
            second = http.post(governed.v1 + "/chat/completions", json=body, headers=headers)
            assert second.status_code == 429, second.text
            assert "parallel" in second.json()["error"]["message"]
        # the client hung up: its slot is released
        for _ in range(50):
            third = http.post(governed.v1 + "/chat/completions",
                              json={**body, "stream": False}, headers=headers)
            if third.status_code == 200:
                break
            threading.Event().wait(0.1)
        assert third.status_code == 200, third.text


def test_a_repeated_request_id_still_counts(governed: RunningServer, admin: Admin) -> None:
    """Clients choose their x-request-id; reusing one must not dodge the limit."""
    client = sdk(governed, admin.create_key(name="same-id", rpm=2)["key"])
    same = {"x-request-id": "always-the-same"}
    for _ in range(2):
        client.chat.completions.create(model="free", messages=MSG, extra_headers=same)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="free", messages=MSG, extra_headers=same)


def test_redis_outage_refuses_with_503(tmp_path: Path, fake: FakeUpstream) -> None:
    """Counters that cannot be reached refuse requests (fail closed) with a clear, retryable
    error instead of a 500 or letting them through unlimited."""
    with ExitStack() as redis:
        try:
            url = redis.enter_context(redis_server())  # this test's own: it is stopped below
        except ServiceMissing as exc:
            missing_service(exc)
        server = start_governed(tmp_path, fake, "--redis-url", url)
        try:
            key = Admin(server).create_key(name="redis-outage", rpm=100)["key"]
            client = sdk(server, key)
            client.chat.completions.create(model="free", messages=MSG)
            redis.close()  # Redis goes away under the running server
            with pytest.raises(openai.InternalServerError) as err:
                client.chat.completions.create(model="free", messages=MSG)
            assert err.value.status_code == 503
            assert err.value.body["code"] == "limits_unavailable"
            assert err.value.response.headers["retry-after"] == "1"
            # keys without limits need no counters and keep working
            assert sdk(server, STATIC_KEY).chat.completions.create(model="free",
                                                                   messages=MSG).id
        finally:
            stop_server(server)
