"""How a request ended, as the ledger records it (``Outcome``): answered whole, streamed (to its
end, failed in-band, or cut by the client), failed before answering, or cut off while the client
waited for a whole answer, which is charged what it used."""

from __future__ import annotations

from typing import Any

from switchboard.errors import APIError
from switchboard.gateway.accounting import RequestClock, response_metrics
from switchboard.gateway.config import Price
from switchboard.gateway.router import Answer, Deployment, ProviderRouter, RoutedStream
from switchboard.governance.governor import Outcome
from switchboard.pipeline.admission import prompt_estimate, reachable
from switchboard.pipeline.failures import to_api_error
from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.serving import ChatRun


def answered(answer: Answer) -> Outcome:
    completion = answer.completion
    usage = completion.get("usage") or {}
    return Outcome(
        200, answer.deployment.id, answer.deployment.kind, completion.get("metrics"),
        cached_tokens=_cached(usage),
        output=[c.get("message") for c in completion.get("choices") or ()],
    )


def streamed(stream: RoutedStream) -> Outcome:
    """A finished (or cut) stream; an in-band failure is recorded with its status."""
    status, error = 200, None
    if stream.failure is not None:
        failure = to_api_error(stream.failure)
        status, error = failure.status, failure.message
    elif not stream.completed:
        status, error = 499, "the client disconnected"
    return Outcome(status, stream.deployment.id, stream.deployment.kind, stream.metrics,
                   cached_tokens=_cached(stream.usage or {}), error=error,
                   output=stream.output_text)


def failed(error: APIError) -> Outcome:
    return Outcome(error.status, error=error.message)


def cut_off(gateway: ProviderRouter, request: ChatCompletionRequest, deployment: str | None,
            runs: list[ChatRun], clock: RequestClock) -> Outcome:
    """A request whose client hung up before its answer (499), charged what it used: a local
    run's prompt and the tokens decoded before it was cancelled; for an upstream, which sends
    nothing back before its whole answer, the prompt it was sent (estimated, at the dearest price
    the request could reach)."""
    clock.stop()
    dep: Deployment | None = None
    runs = [run for run in runs if run.handles]  # submitted to the engine
    if runs:
        dep = gateway.deployments.get(runs[-1].request.model or "")
        usage = {"prompt_tokens": sum(r.prompt_tokens for r in runs),
                 "completion_tokens": sum(r.tokens_generated() for r in runs)}
        price = gateway.price(dep, gateway.route_of(dep)) if dep is not None else Price()
        estimated = False
    else:
        usage = {"prompt_tokens": prompt_estimate(gateway, request), "completion_tokens": 0}
        try:
            prices = [gateway.price(d, r)
                      for d, r in reachable(gateway, request.model, deployment)]
        except Exception:  # noqa: BLE001 - the model is gone from the config: no price known
            prices = []
        price = max(prices, key=lambda p: p.cost(usage["prompt_tokens"], 0), default=Price())
        estimated = True
    metrics = response_metrics(usage, price, clock, estimated)
    return Outcome(499, dep.id if dep else None, dep.kind if dep else None, metrics,
                   error="the client disconnected")


def _cached(usage: dict[str, Any]) -> int:
    return int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
