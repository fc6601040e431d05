"""``ProviderRouter``: from a public model name to an answer, across deployments and fallbacks.

For each request: resolve the model (name or alias), pick a deployment by the model's strategy
(weighted round-robin, least busy, lowest latency), and try it. A retryable failure (connect
error, timeout, reset, 429, 5xx, local queue full) before the first byte reaches the client is
retried, on another deployment when there is one, with exponential backoff (or the upstream's
``Retry-After``) when the same one is tried again; after the model's retries its ``fallbacks`` are
tried in order. Failing deployments cool down for a while and come back on their own; a 429 or a
full queue is back-pressure on one request, not ill health, and cools nothing down. A request's
``api_key_ref`` limits it to the deployments its secret is bound to. Streams pass through event
by event; usage, timing and cost are measured on every answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from switchboard.errors import ModelNotFound
from switchboard.gateway.accounting import (
    RequestClock,
    Tokenize,
    UsageCounter,
    estimate_tokens,
    response_metrics,
)
from switchboard.gateway.config import (
    DeploymentConfig,
    GatewayConfig,
    ModelRoute,
    Price,
    allows_key_ref,
)
from switchboard.gateway.providers.base import (
    Call,
    Provider,
    UpstreamFailure,
    UpstreamStream,
    key_ref_refused,
)
from switchboard.gateway.routed_stream import RoutedStream
from switchboard.gateway.telemetry import GatewayTelemetry
from switchboard.protocol.chat import ChatCompletionRequest

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_RETRY_WAIT_S = 5.0  # a longer Retry-After is waited only this long
# Back-pressure on one request (an upstream's 429, a full local queue): retried after its wait,
# but no sign that the deployment is unhealthy, so it counts toward no cooldown.
BACKPRESSURE: frozenset[str] = frozenset({"rate_limited", "overloaded"})
LATENCY_SMOOTHING = 0.3


@dataclass
class Deployment:
    """A configured deployment, its provider and its live health."""

    config: DeploymentConfig
    provider: Provider
    in_flight: int = 0
    latency_s: float | None = None  # moving average of time to first token
    failures: int = 0  # consecutive
    cooldown_until: float = 0.0

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def kind(self) -> str:
        return self.config.provider

    def cooling(self, now: float) -> bool:
        return now < self.cooldown_until


@dataclass
class Answer:
    """A whole completion (``metrics`` included) and where it came from."""

    completion: dict[str, Any]
    deployment: Deployment
    route: ModelRoute | None


@dataclass
class _Attempts:
    """What one request has tried so far."""

    tried: list[str] = field(default_factory=list)
    last: UpstreamFailure | None = None


class ProviderRouter:
    def __init__(
        self,
        config: GatewayConfig,
        providers: dict[str, Provider],
        telemetry: GatewayTelemetry,
        tokenize: Tokenize | None = None,
        secrets: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.telemetry = telemetry
        self.tokenize = tokenize
        self._secrets = secrets or {}
        self.deployments = {
            d.id: Deployment(d, providers[d.id]) for d in config.deployments
        }
        self.routes: dict[str, ModelRoute] = {}
        for route in config.models:
            for name in (route.name, *route.aliases):
                self.routes[name] = route
        self._rr: dict[str, dict[str, float]] = {}  # smooth weighted round-robin state per route
        self.created = int(time.time())

    # -- lookup -------------------------------------------------------------------------------

    def resolve(self, name: str | None) -> ModelRoute:
        if not name:
            if not self.config.models:
                raise ModelNotFound("")
            return self.config.models[0]
        route = self.routes.get(name)
        if route is None:
            raise ModelNotFound(name)
        return route

    def dedicated(self, deployment_id: str) -> Deployment:
        dep = self.deployments.get(deployment_id)
        if dep is None or not dep.config.dedicated:
            raise ModelNotFound(f"deployments/{deployment_id}")
        return dep

    def public_names(self, model: str | None, deployment: str | None = None) -> list[str]:
        """The names a request's model goes by, its public name first (raises
        ``ModelNotFound`` if unknown): what a key's model list is checked against."""
        route = self.route_of(self.dedicated(deployment)) if deployment else self.resolve(model)
        if route is None:
            return [deployment or ""]
        return [route.name, *route.aliases]

    def model_limits(self, name: str) -> tuple[int | None, int | None]:
        route = self.routes.get(name)
        return (route.rpm, route.tpm) if route else (None, None)

    def route_of(self, dep: Deployment) -> ModelRoute | None:
        return next((r for r in self.config.models if dep.id in r.deployments), None)

    def _call(self, request: ChatCompletionRequest, dep: Deployment,
              tenant: str | None) -> Call:
        return Call(request, api_key=self._stored_key(request.api_key_ref, dep), tenant=tenant)

    def _stored_key(self, name: str | None, dep: Deployment) -> str | None:
        """The secret an ``api_key_ref`` names, if it is bound to ``dep`` (else refused)."""
        if not name:
            return None
        key = self._secrets.get(name)
        if key is None or not self.allows_key_ref(name, dep):
            raise key_ref_refused(name)
        return key

    def allows_key_ref(self, name: str | None, dep: Deployment) -> bool:
        """Whether a request naming ``api_key_ref: name`` (``None``: none) may go to ``dep``."""
        return name is None or allows_key_ref(self.config.secrets, name, dep.config)

    async def _attempt(self, dep: Deployment, attempts: _Attempts, work: Awaitable[T]) -> T | None:
        """One attempt on ``dep`` with its health bookkeeping; ``None`` when it failed in a way
        that another attempt may mend (a failure no retry can mend is raised)."""
        self.begin(dep)
        try:
            return await work
        except UpstreamFailure as failure:
            self.failed(dep, failure)
            attempts.last = failure
            if not failure.retryable:
                raise
            return None
        except asyncio.CancelledError:
            self.end(dep, "cancelled")
            raise
        except Exception:
            self.end(dep, "client_error")
            raise

    # -- non-streamed -------------------------------------------------------------------------

    async def complete(
        self,
        request: ChatCompletionRequest,
        deployment: str | None = None,
        retries: int | None = None,
        tenant: str | None = None,
    ) -> Answer:
        """``deployment``: only that (dedicated) one; ``retries`` overrides the model's;
        ``tenant``: who asks (an API key's id), for the local engine's turns."""
        attempts = _Attempts()
        async for dep, route in self._candidates(request.model, deployment, attempts, retries,
                                                 request.api_key_ref):
            clock = RequestClock()
            call = self._call(request, dep, tenant)
            result = await self._attempt(dep, attempts, dep.provider.complete(call))
            if result is None:
                continue
            clock.stop()
            if result.time_to_first_token_s is not None:
                clock.first_token = clock.start + result.time_to_first_token_s
            self.succeeded(dep, clock)
            completion = result.completion
            counter = UsageCounter()
            counter.observe_completion(completion)
            usage, estimated = counter.final(request.wire(), self.tokenize)
            completion["usage"] = usage
            completion["metrics"] = response_metrics(
                usage, self.price(dep, route), clock, estimated)
            return Answer(completion, dep, route)
        raise self._exhausted(attempts)

    # -- embeddings ---------------------------------------------------------------------------

    async def embed(self, body: dict[str, Any], model: str | None) -> Answer:
        """An embeddings request on a model's deployments, with the same retries, fallbacks and
        cooldowns as chat; ``metrics`` (input tokens, cost, latency) added to the answer."""
        attempts = _Attempts()
        key_ref = body.get("api_key_ref")
        if key_ref is not None and not isinstance(key_ref, str):
            raise key_ref_refused(str(key_ref))
        async for dep, route in self._candidates(model, None, attempts, key_ref=key_ref):
            clock = RequestClock()
            key = self._stored_key(key_ref, dep)
            answer = await self._attempt(dep, attempts, dep.provider.embed(body, key))
            if answer is None:
                continue
            clock.stop()
            self.succeeded(dep, clock)
            usage = answer.get("usage") or {}
            tokens = int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0)
            if not tokens:
                tokens = sum(estimate_tokens(t, self.tokenize) for t in _embedding_texts(body))
                answer["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
            answer["metrics"] = response_metrics({"prompt_tokens": tokens}, self.price(dep, route),
                                                 clock)
            return Answer(answer, dep, route)
        raise self._exhausted(attempts)

    # -- streamed -----------------------------------------------------------------------------

    async def stream(
        self,
        request: ChatCompletionRequest,
        deployment: str | None = None,
        include_usage: bool = False,
        retries: int | None = None,
        tenant: str | None = None,
    ) -> RoutedStream:
        """Open a stream; retries and fallbacks happen until its first event has arrived."""
        attempts = _Attempts()
        async for dep, route in self._candidates(request.model, deployment, attempts, retries,
                                                 request.api_key_ref):
            clock = RequestClock()
            call = self._call(request, dep, tenant)
            self.begin(dep)
            upstream: UpstreamStream | None = None
            try:
                upstream = await dep.provider.stream(call)
                events = upstream.__aiter__()
                try:
                    first = await anext(events)
                except StopAsyncIteration:
                    raise UpstreamFailure(
                        "bad_response", "the upstream sent an empty stream") from None
            except UpstreamFailure as failure:
                if upstream is not None:
                    await upstream.aclose()
                self.failed(dep, failure)
                attempts.last = failure
                if not failure.retryable:
                    raise
                continue
            except BaseException as exc:  # the client left (cancelled), or a bad request
                if upstream is not None:
                    await upstream.aclose()
                cancelled = isinstance(exc, asyncio.CancelledError)
                self.end(dep, "cancelled" if cancelled else "client_error")
                raise
            return RoutedStream(self, dep, route, request, upstream, events, first, clock,
                                include_usage)
        raise self._exhausted(attempts)

    # -- choosing -----------------------------------------------------------------------------

    async def _candidates(
        self, model: str | None, deployment: str | None, attempts: _Attempts,
        retries: int | None = None, key_ref: str | None = None,
    ) -> AsyncIterator[tuple[Deployment, ModelRoute | None]]:
        """Deployments to try, in order, sleeping between attempts where a backoff is due.

        With ``key_ref``, only deployments its secret is bound to: a model none of whose own
        deployments may use it is refused before anything is sent, and fallbacks skip the
        deployments (and models) it is not bound to."""
        if deployment is not None:
            dep = self.dedicated(deployment)
            if not self.allows_key_ref(key_ref, dep):
                raise key_ref_refused(str(key_ref))
            route = self.route_of(dep)
            extra = retries if retries is not None else (route.retries if route else 2)
            for n in range(1 + extra):
                if n:
                    await self._backoff(route, n - 1, attempts.last)
                yield dep, route
            return
        first = self.resolve(model)
        if not self._pool(first, key_ref):
            raise key_ref_refused(str(key_ref))
        chain = [first] + [r for r in (self.routes[name] for name in first.fallbacks)
                           if self._pool(r, key_ref)]
        for position, route in enumerate(chain):
            if position:
                self.telemetry.fallbacks.labels(first.name, route.name).inc()
                log.warning("model %s: falling back to %s", first.name, route.name)
            for n in range(1 + (retries if retries is not None else route.retries)):
                dep = self._pick(route, attempts.tried, probe=not attempts.tried and
                                 position == len(chain) - 1, key_ref=key_ref)
                if dep is None:
                    break
                if dep.id in attempts.tried:
                    await self._backoff(route, n - 1, attempts.last)
                attempts.tried.append(dep.id)
                yield dep, route

    def _pool(self, route: ModelRoute, key_ref: str | None) -> list[Deployment]:
        """The route's deployments a request with ``key_ref`` may go to."""
        pool = [self.deployments[d] for d in route.deployments]
        return [d for d in pool if self.allows_key_ref(key_ref, d)]

    def _pick(self, route: ModelRoute, tried: list[str], probe: bool,
              key_ref: str | None = None) -> Deployment | None:
        now = time.monotonic()
        pool = self._pool(route, key_ref)
        healthy = [d for d in pool if not d.cooling(now)]
        fresh = [d for d in healthy if d.id not in tried]
        candidates = fresh or healthy
        if not candidates:
            if not probe:
                return None
            return min(pool, key=lambda d: d.cooldown_until)  # everything cools: try the soonest
        if len(candidates) == 1:
            return candidates[0]
        if route.strategy == "least-busy":
            return min(candidates, key=lambda d: (d.in_flight / d.config.weight))
        if route.strategy == "lowest-latency":
            return min(candidates, key=lambda d: d.latency_s or 0.0)
        return self._round_robin(route, candidates)

    def _round_robin(self, route: ModelRoute, candidates: list[Deployment]) -> Deployment:
        """nginx's smooth weighted round-robin: deployments interleaved in weight proportion."""
        state = self._rr.setdefault(route.name, {})
        total = 0.0
        best: Deployment | None = None
        for dep in candidates:
            weight = dep.config.weight
            total += weight
            state[dep.id] = state.get(dep.id, 0.0) + weight
            if best is None or state[dep.id] > state[best.id]:
                best = dep
        assert best is not None
        state[best.id] -= total
        return best

    @staticmethod
    async def _backoff(route: ModelRoute | None, n: int, failure: UpstreamFailure | None) -> None:
        delay = (route.backoff_s if route else 0.25) * (2 ** max(0, n))
        if failure is not None and failure.retry_after_s is not None:
            delay = min(failure.retry_after_s, MAX_RETRY_WAIT_S)
        if delay > 0:
            await asyncio.sleep(delay)

    # -- health (also recorded by RoutedStream when a stream ends) ------------------------------

    def begin(self, dep: Deployment) -> None:
        dep.in_flight += 1
        self.telemetry.in_flight.labels(dep.id, dep.kind).inc()

    def end(self, dep: Deployment, outcome: str) -> None:
        dep.in_flight -= 1
        self.telemetry.in_flight.labels(dep.id, dep.kind).dec()
        self.telemetry.requests.labels(dep.id, dep.kind, outcome).inc()

    def succeeded(self, dep: Deployment, clock: RequestClock) -> None:
        self.end(dep, "success")
        latency = (clock.end or time.perf_counter()) - clock.start
        ttft = (clock.first_token or clock.end or clock.start) - clock.start
        dep.latency_s = ttft if dep.latency_s is None else (
            LATENCY_SMOOTHING * ttft + (1 - LATENCY_SMOOTHING) * dep.latency_s
        )
        if dep.failures or dep.cooldown_until:
            dep.failures, dep.cooldown_until = 0, 0.0
            self.telemetry.cooldown.labels(dep.id, dep.kind).set(0)
        self.telemetry.latency.labels(dep.id, dep.kind).observe(latency)
        self.telemetry.ttft.labels(dep.id, dep.kind).observe(ttft)

    def failed(self, dep: Deployment, failure: UpstreamFailure) -> None:
        """Count the failure; retryable ones that are the deployment's fault (not back-pressure
        such as a 429, which the request's retry waits out) lead to a cooldown."""
        self.end(dep, "failure")
        self.telemetry.failures.labels(dep.id, dep.kind, failure.kind).inc()
        log.warning("deployment %s failed (%s): %s", dep.id, failure.kind, failure.message)
        if not failure.retryable or failure.kind in BACKPRESSURE:
            return
        dep.failures += 1
        if dep.failures >= dep.config.failures_before_cooldown and dep.config.cooldown_s:
            dep.cooldown_until = time.monotonic() + dep.config.cooldown_s
            self.telemetry.cooldown.labels(dep.id, dep.kind).set(1)

    @staticmethod
    def _exhausted(attempts: _Attempts) -> Exception:
        if attempts.last is not None:
            return attempts.last
        return UpstreamFailure("overloaded", "no deployment of this model is available", 503,
                               retry_after_s=1.0)

    @staticmethod
    def price(dep: Deployment, route: ModelRoute | None) -> Price:
        return dep.config.price or (route.price if route else Price())

    async def close(self) -> None:
        for dep in self.deployments.values():
            await dep.provider.close()


def _embedding_texts(body: dict[str, Any]) -> list[str]:
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []

