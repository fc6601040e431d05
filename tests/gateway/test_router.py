"""ProviderRouter's choices with in-process providers (no network): strategies, cooldown probe."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import NoReturn

import pytest
from prometheus_client import CollectorRegistry
from pytest import MonkeyPatch

from switchboard.gateway.config import GatewayConfig
from switchboard.gateway.providers.base import Call, ProviderResult, UpstreamFailure
from switchboard.gateway.router import ProviderRouter
from switchboard.gateway.telemetry import GatewayTelemetry
from switchboard.protocol.chat import ChatCompletionRequest


class Scripted:
    """Answers after ``delay`` seconds, or fails with ``failure``."""

    def __init__(self, name: str, delay: float = 0.0, failure: str | None = None) -> None:
        self.name, self.delay, self.failure, self.calls = name, delay, failure, 0

    async def complete(self, call: Call) -> ProviderResult:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.failure:
            raise UpstreamFailure(self.failure, "scripted")  # type: ignore[arg-type]
        return ProviderResult({"choices": [{"index": 0, "message": {"content": self.name}}],
                               "usage": {"prompt_tokens": 1, "completion_tokens": 1}})

    async def stream(self, call: Call) -> NoReturn:  # pragma: no cover - not used here
        raise NotImplementedError

    async def close(self) -> None:
        return None


def router(strategy: str, providers: dict[str, Scripted], **model: object) -> ProviderRouter:
    config = GatewayConfig.model_validate({
        "deployments": [{"id": name, "provider": "openai-compatible", "base_url": "http://x",
                         "model": "m", "cooldown_s": 60, "failures_before_cooldown": 1}
                        for name in providers],
        "models": [{"name": "m", "deployments": list(providers), "strategy": strategy,
                    "backoff_s": 0, **model}],
    })
    return ProviderRouter(config, providers, GatewayTelemetry(CollectorRegistry()))  # type: ignore[arg-type]


REQUEST = ChatCompletionRequest.model_validate({"model": "m", "messages": [
    {"role": "user", "content": "hi"}]})


def ask(r: ProviderRouter) -> str:
    async def one() -> str:
        answer = await r.complete(REQUEST)
        return answer.deployment.id
    return asyncio.run(one())


def test_least_busy_avoids_the_deployment_with_requests_in_flight() -> None:
    slow, fast = Scripted("slow", delay=0.2), Scripted("fast")
    r = router("least-busy", {"slow": slow, "fast": fast})

    async def scenario() -> list[str]:
        first = asyncio.ensure_future(r.complete(REQUEST))
        await asyncio.sleep(0.01)  # "slow" (first pick on a tie) is now busy
        others = [await r.complete(REQUEST) for _ in range(3)]
        return [(await first).deployment.id, *(a.deployment.id for a in others)]

    assert asyncio.run(scenario()) == ["slow", "fast", "fast", "fast"]


def test_lowest_latency_prefers_the_faster_deployment_once_measured() -> None:
    slow, fast = Scripted("slow", delay=0.05), Scripted("fast", delay=0.0)
    r = router("lowest-latency", {"slow": slow, "fast": fast})
    picks = [ask(r) for _ in range(6)]
    assert picks[:2] == ["slow", "fast"]  # unmeasured ones first, in order
    assert picks[2:] == ["fast"] * 4


def test_when_everything_cools_down_the_soonest_back_is_still_tried() -> None:
    bad = Scripted("bad", failure="server_error")
    r = router("round-robin", {"bad": bad}, retries=0)
    for _ in range(2):
        with contextlib.suppress(UpstreamFailure):
            ask(r)
    assert bad.calls == 2, "a lone deployment in cooldown is probed rather than refused"
    bad.failure = None
    assert ask(r) == "bad"
    assert not r.deployments["bad"].cooling(time.monotonic()) and r.deployments["bad"].failures == 0


class RateLimitedOnce(Scripted):
    """Answers 429 (``Retry-After: retry_after_s``) the first time, then normally."""

    def __init__(self, name: str, retry_after_s: float) -> None:
        super().__init__(name)
        self.retry_after_s = retry_after_s

    async def complete(self, call: Call) -> ProviderResult:
        if not self.calls:
            self.calls += 1
            raise UpstreamFailure("rate_limited", "slow down", 429,
                                  retry_after_s=self.retry_after_s)
        return await super().complete(call)


def test_a_429_is_waited_out_and_retried_without_a_cooldown() -> None:
    limited = RateLimitedOnce("limited", retry_after_s=0.3)
    r = router("round-robin", {"limited": limited}, retries=1)  # cools after 1 failure, 60 s
    started = time.monotonic()
    assert ask(r) == "limited"
    assert limited.calls == 2 and time.monotonic() - started >= 0.3, "Retry-After was waited"
    dep = r.deployments["limited"]
    assert not dep.cooling(time.monotonic()) and dep.failures == 0


def test_a_long_retry_after_is_waited_only_up_to_the_cap(monkeypatch: MonkeyPatch) -> None:
    monkeypatch.setattr("switchboard.gateway.router.MAX_RETRY_WAIT_S", 0.2)
    limited = RateLimitedOnce("limited", retry_after_s=3600)
    r = router("round-robin", {"limited": limited}, retries=1)
    started = time.monotonic()
    assert ask(r) == "limited" and time.monotonic() - started < 2


def test_a_key_ref_not_bound_to_the_model_sends_nothing() -> None:
    up = Scripted("up")
    r = router("round-robin", {"up": up})
    request = REQUEST.model_copy(update={"api_key_ref": "elsewhere"})
    with pytest.raises(UpstreamFailure) as caught:
        asyncio.run(r.complete(request))
    assert caught.value.status == 400 and caught.value.body["error"]["param"] == "api_key_ref"
    assert up.calls == 0
