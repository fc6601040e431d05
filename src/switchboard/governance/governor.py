"""``Governor``: the one object the HTTP layer asks about a request, three times.

1. ``authenticate(presented keys)`` → a ``Principal`` (401 when no valid key);
2. ``admit(principal, model, …)`` → an ``Admission`` carrying the ``x-ratelimit-*`` headers
   (403 for a model the key may not use, 429 over a limit or budget);
3. ``Admission.finish(outcome)`` once the answer is complete (or failed, or cancelled): the tokens
   and cost are counted against the limits and one ledger row is buffered.

While a request runs it holds its worst case (tokens and cost, from the caller's ``reserve``)
against the key's tpm limits and budget, so that requests arriving together cannot overshoot a
limit by more than one request's worst case; ``finish`` replaces it by what was used.

Nothing here waits on the database on the hot path: keys are cached, counters are in memory or one
Redis round trip, and ledger rows are written in batches.
"""

from __future__ import annotations

import itertools
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from switchboard.governance.keys import ApiKey, KeyRing, Principal
from switchboard.governance.ledger import UsageLedger
from switchboard.governance.limits import (
    LimitStore,
    LimitStoreUnavailable,
    Scope,
    Spend,
    Verdict,
)
from switchboard.persistence.usage import UsageRepository

log = logging.getLogger(__name__)

LIFETIME_TTL_S = 7 * 86400
SCALAR_PARAMS = (int, float, bool, str)
ModelLimits = Callable[[str], tuple[int | None, int | None]]  # public model -> (rpm, tpm)
WorstCase = Callable[[], tuple[int, float]]  # a request's most tokens and cost (USD)


class GovernanceError(Exception):
    """A refusal, in OpenAI's error terms; the HTTP layer renders it."""

    def __init__(self, status: int, message: str, type: str, code: str,
                 param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type, code
        self.param = param
        self.headers = headers or {}


@dataclass
class Outcome:
    """How a request ended, for the counters and the ledger."""

    status: int
    deployment: str | None = None
    provider: str | None = None
    metrics: dict[str, Any] | None = None
    cached_tokens: int = 0
    error: str | None = None
    output: Any = None  # the answer's messages (kept only with content logging)


@dataclass
class Admission:
    governor: Governor
    principal: Principal
    model: str | None
    endpoint: str
    request_id: str
    session_id: str | None
    stream: bool
    parameters: dict[str, Any] | None
    messages: Any
    scopes: list[Scope] = field(default_factory=list)
    parallel: str | None = None
    spend: Spend | None = None
    member: str = ""  # this admission in the counters
    reserved_tokens: int = 0  # held against the tpm limits until it settles
    reserved_usd: float = 0.0  # held against the budget until it settles
    headers: dict[str, str] = field(default_factory=dict)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    done: bool = False

    async def finish(self, outcome: Outcome) -> None:
        """Count the request's tokens and cost and buffer its ledger row (once)."""
        if self.done:
            return
        self.done = True
        await self.governor.settle(self, outcome)


class Governor:
    def __init__(
        self,
        keys: KeyRing,
        limits: LimitStore,
        ledger: UsageLedger | None,
        model_limits: ModelLimits | None = None,
        log_content: bool = False,
        usage: UsageRepository | None = None,
        ledger_sync: bool = False,
    ) -> None:
        self.keys = keys
        self.limits = limits
        self.ledger = ledger
        self.usage = usage
        self._spends: dict[str, tuple[float | None, datetime, Spend]] = {}
        self._instance = uuid.uuid4().hex[:12] + ":"
        self._admissions = itertools.count()
        self._model_limits = model_limits or (lambda _name: (None, None))
        self.log_content = log_content
        self.ledger_sync = ledger_sync  # finish waits until the row is stored

    # -- 1. who --------------------------------------------------------------------------------

    async def authenticate(self, presented: list[str]) -> Principal:
        if not presented:
            if await self.keys.is_open():
                return Principal()
            raise GovernanceError(
                401, "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' "
                "or 'x-api-key: KEY'.", "authentication_error", "missing_api_key")
        principal = await self.keys.authenticate(presented)
        if principal is None:
            if await self.keys.is_open():
                return Principal()
            raise GovernanceError(401, "Incorrect API key provided.", "authentication_error",
                                  "invalid_api_key")
        key = principal.key
        if key is not None and key.revoked_at is not None:
            raise GovernanceError(401, "This API key has been revoked.", "authentication_error",
                                  "invalid_api_key")
        if key is not None and key.expired(datetime.now(UTC)):
            raise GovernanceError(401, f"This API key expired at {key.expires_at:%Y-%m-%d %H:%M} "
                                  "UTC.", "authentication_error", "expired_api_key")
        return principal

    # -- 2. may it, now ------------------------------------------------------------------------

    async def admit(
        self,
        principal: Principal,
        model: str | None,
        names: list[str] | None = None,
        *,
        endpoint: str = "chat.completions",
        request_id: str | None = None,
        session_id: str | None = None,
        stream: bool = False,
        body: dict[str, Any] | None = None,
        reserve: WorstCase | None = None,
    ) -> Admission:
        """``model``: the public model name; ``names``: all it goes by (aliases too);
        ``reserve``: the request's worst case, asked only when a tpm limit or budget applies."""
        admission = Admission(
            self, principal, model, endpoint, request_id or uuid.uuid4().hex, session_id, stream,
            _parameters(body), (body or {}).get("messages") if self.log_content else None,
        )
        key = principal.key
        names = names or ([model] if model else [])
        if key is not None and names and not key.allows(*names):
            raise self._refused(admission, GovernanceError(
                403, f"This API key may not use the model {model!r}.",
                "invalid_request_error", "model_not_allowed", param="model"))
        admission.scopes = self._scopes(key, model)
        if key is not None and key.max_parallel is not None:
            admission.parallel = key.id
        if key is not None and key.budget_usd is not None:
            admission.spend = self._spend(key, admission.started)
        if not admission.scopes and admission.parallel is None and admission.spend is None:
            return admission
        parallel = (admission.parallel, key.max_parallel) if key and key.max_parallel else None
        if reserve is not None and (admission.spend is not None
                                    or any(s.tpm is not None for s in admission.scopes)):
            admission.reserved_tokens, admission.reserved_usd = reserve()
        # a member unique to this admission (clients choose their x-request-id)
        member = admission.member = f"{self._instance}{next(self._admissions)}"
        try:
            verdict = await self.limits.admit(member, admission.scopes, parallel,
                                              admission.spend, admission.reserved_tokens,
                                              admission.reserved_usd)
            if (verdict.reason == "spend_unknown" and key is not None
                    and admission.spend is not None):
                await self._seed_spend(key, admission.spend)
                verdict = await self.limits.admit(member, admission.scopes, parallel,
                                                  admission.spend, admission.reserved_tokens,
                                                  admission.reserved_usd)
        except LimitStoreUnavailable as exc:
            log.error("rate-limit counters unavailable: %s", exc)
            raise self._refused(admission, GovernanceError(
                503, "The rate-limit counters are unavailable; please try again shortly.",
                "server_error", "limits_unavailable", headers={"retry-after": "1"})) from exc
        if verdict.allowed and verdict.requests is not None and verdict.requests.reset_s <= 0:
            verdict.requests.reset_s = 60.0  # this request is now the window's oldest
        admission.headers = rate_limit_headers(verdict)
        if not verdict.allowed:
            raise self._refused(admission, self._refusal(verdict, key, admission))
        return admission

    def _refused(self, admission: Admission, error: GovernanceError) -> GovernanceError:
        """A refused request is in the ledger too (nothing was used, nothing is counted)."""
        admission.done = True
        self._record(admission, Outcome(error.status, error=error.message))
        return error

    def _spend(self, key: ApiKey, now: datetime) -> Spend:
        """The key's spend counter for the current period (cached until the period ends)."""
        cached = self._spends.get(key.id)
        if cached is not None and cached[0] == key.budget_usd and now < cached[1]:
            return cached[2]
        spend = _spend(key, now)
        _, end = key.budget_window(now)
        self._spends[key.id] = (key.budget_usd, end or now + timedelta(seconds=60), spend)
        return spend

    def _scopes(self, key: ApiKey | None, model: str | None) -> list[Scope]:
        scopes = []
        if key is not None and (key.rpm is not None or key.tpm is not None):
            scopes.append(Scope(f"k:{key.id}", key.rpm, key.tpm))
        if key is not None and model is not None and model in key.model_limits:
            limit = key.model_limits[model]
            scopes.append(Scope(f"km:{key.id}:{model}", limit.rpm, limit.tpm))
        if model is not None:
            rpm, tpm = self._model_limits(model)
            if rpm is not None or tpm is not None:
                scopes.append(Scope(f"m:{model}", rpm, tpm))
        return scopes

    async def _seed_spend(self, key: ApiKey, spend: Spend) -> None:
        start, _ = key.budget_window(datetime.now(UTC))
        spent = 0.0
        if self.usage is not None:
            if self.ledger is not None:
                await self.ledger.flush()
            spent = await self.usage.spend(key.id, start)
        await self.limits.seed_spend(spend, spent)

    def _refusal(
        self, verdict: Verdict, key: ApiKey | None, admission: Admission
    ) -> GovernanceError:
        retry_after = str(max(1, math.ceil(verdict.retry_after_s)))
        headers = {**admission.headers, "retry-after": retry_after}
        if verdict.reason == "budget" and key is not None:
            _, end = key.budget_window(datetime.now(UTC))
            until = f" until {end:%Y-%m-%d %H:%M} UTC" if end else ""
            spent = verdict.spent_usd or 0.0
            if spent < (key.budget_usd or 0.0):  # the rest is held by requests in progress
                return GovernanceError(
                    429, f"This key's budget is taken up by requests in progress: it has spent "
                    f"${spent:.4f} of its ${key.budget_usd:.4f} budget and "
                    f"${verdict.reserved_usd:.4f} more may be spent by requests still running "
                    "(each holds its worst-case cost); please try again when they finish.",
                    "insufficient_quota", "insufficient_quota", headers=headers)
            return GovernanceError(
                429, f"You exceeded your current quota: this key has spent "
                f"${spent:.4f} of its ${key.budget_usd:.4f} budget{until}.",
                "insufficient_quota", "insufficient_quota", headers=headers)
        if verdict.reason == "parallel" and key is not None:
            return GovernanceError(
                429, f"Too many parallel requests: this key allows {key.max_parallel} at once.",
                "requests", "rate_limit_exceeded", headers=headers)
        unit = "tokens" if verdict.reason == "tokens" else "requests"
        window = verdict.tokens if unit == "tokens" else verdict.requests
        limit = f"Limit {window.limit}, " if window else ""
        return GovernanceError(
            429, f"Rate limit reached on {unit} per min ({'TPM' if unit == 'tokens' else 'RPM'}"
            f"): {limit}please try again in {format_reset(verdict.retry_after_s)}.",
            unit, "rate_limit_exceeded", headers=headers)

    # -- 3. what it used -----------------------------------------------------------------------

    async def settle(self, admission: Admission, outcome: Outcome) -> None:
        metrics = outcome.metrics or {}
        tokens = int(metrics.get("total_tokens") or 0)
        cost = float(metrics.get("cost_usd") or 0.0)
        if admission.scopes or admission.parallel or admission.spend:
            # in memory, or queued for the next Redis call: never a round trip of its own
            await self.limits.settle(admission.scopes, tokens, admission.parallel,
                                     admission.spend, cost, admission.member)
        row = self._record(admission, outcome)
        if row is not None and self.ledger is not None and self.ledger_sync:
            await self.ledger.written_through(row)

    def _record(self, admission: Admission, outcome: Outcome) -> dict[str, Any] | None:
        if self.ledger is None:
            return None
        metrics = outcome.metrics or {}
        content = None
        if self.log_content:
            content = {"messages": admission.messages, "output": outcome.output}
        row = {
            "request_id": admission.request_id,
            "created_at": admission.started,
            "day": admission.started.isoformat()[:10],
            "key_id": admission.principal.key_id or ("admin" if admission.principal.admin
                                                     else None),
            "session_id": admission.session_id,
            "endpoint": admission.endpoint,
            "model": admission.model,
            "deployment": outcome.deployment,
            "provider": outcome.provider,
            "stream": admission.stream,
            "status": outcome.status,
            "error": outcome.error,
            "input_tokens": int(metrics.get("input_tokens") or 0),
            "output_tokens": int(metrics.get("output_tokens") or 0),
            "cached_tokens": outcome.cached_tokens,
            "cost_usd": float(metrics.get("cost_usd") or 0.0),
            "latency_s": metrics.get("latency_s"),
            "ttft_s": metrics.get("time_to_first_token_s"),
            "metrics": metrics or None,
            "parameters": admission.parameters,
            "content": content,
        }
        self.ledger.record(row)
        return row

    async def close(self) -> None:
        if self.ledger is not None:
            await self.ledger.close()
        await self.limits.close()


def _spend(key: ApiKey, now: datetime) -> Spend:
    start, end = key.budget_window(now)
    if start is None or end is None:
        return Spend(f"{key.id}:all", float(key.budget_usd or 0.0), LIFETIME_TTL_S)
    ttl = int((end - now + timedelta(seconds=60)).total_seconds())
    return Spend(f"{key.id}:{int(start.timestamp())}", float(key.budget_usd or 0.0), max(ttl, 60))


def _parameters(body: dict[str, Any] | None) -> dict[str, Any] | None:
    """The request's scalar sampling parameters (never its messages, tools or schemas)."""
    if not body:
        return None
    kept = {k: v for k, v in body.items()
            if k not in ("messages", "model") and isinstance(v, SCALAR_PARAMS)}
    stop = body.get("stop")
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        kept["stop"] = stop
    return kept or None


def format_reset(seconds: float) -> str:
    """OpenAI's reset format: milliseconds under a second, then seconds to one decimal, then
    minutes and seconds (``6m0s``)."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    if round(seconds, 1) < 60:
        return f"{round(seconds, 1):g}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s"


def rate_limit_headers(verdict: Verdict) -> dict[str, str]:
    headers = {}
    for unit, window in (("requests", verdict.requests), ("tokens", verdict.tokens)):
        if window is not None:
            headers[f"x-ratelimit-limit-{unit}"] = str(window.limit)
            headers[f"x-ratelimit-remaining-{unit}"] = str(max(0, window.remaining))
            headers[f"x-ratelimit-reset-{unit}"] = format_reset(window.reset_s)
    return headers
