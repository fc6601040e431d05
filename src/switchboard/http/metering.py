"""Between the routes and the ``Governor``: admit a chat request (the key's model list, limits
and budget, holding the request's worst case against them) and report how it ended, whether it
was answered whole, streamed, failed or cut off (a cut-off request is charged what it used).

A request's worst case: its prompt's estimated tokens plus, per choice, ``max_tokens``, else the
rest of a local model's context (or ``default_max_tokens``), else ``reserve_output_tokens`` for an
upstream; priced at the dearest deployment the request may reach (fallbacks included)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request

from switchboard.gateway.accounting import (
    RequestClock,
    estimate_tokens,
    prompt_text,
    response_metrics,
)
from switchboard.gateway.config import ModelRoute, Price
from switchboard.gateway.router import Answer, Deployment, ProviderRouter, RoutedStream
from switchboard.governance.governor import Admission, Governor, Outcome, WorstCase
from switchboard.http.auth import principal
from switchboard.http.errors import APIError, to_api_error
from switchboard.http.request_id import current_request_id
from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.serving import ChatRun
from switchboard.serving.params import samples_to_draw

SESSION_HEADER = "x-session-id"
MESSAGE_OVERHEAD_TOKENS = 4  # a chat template's role and separator tokens, per message


async def admit(
    request: Request,
    body: ChatCompletionRequest,
    raw: dict[str, Any],
    deployment: str | None = None,
    endpoint: str = "chat.completions",
) -> Admission:
    """Raises ``APIError`` (404 unknown model, 403 model not allowed, 429 over a limit)."""
    gateway: ProviderRouter = request.app.state.router
    governor: Governor = request.app.state.governor
    try:
        names = gateway.public_names(body.model, deployment)
        return await governor.admit(
            principal(request), names[0], names,
            endpoint=endpoint, request_id=current_request_id.get(),
            session_id=body.session_id or request.headers.get(SESSION_HEADER),
            stream=bool(body.stream), body=raw,
            reserve=worst_case(request, body, raw, deployment),
        )
    except Exception as exc:
        raise to_api_error(exc) from exc


def prompt_estimate(gateway: ProviderRouter, raw: dict[str, Any]) -> int:
    """The prompt's tokens as estimated before it is rendered (messages, tool calls, tools)."""
    messages = raw.get("messages")
    count = len(messages) if isinstance(messages, list) else 0
    tokens = estimate_tokens(prompt_text(raw), gateway.tokenize)
    if raw.get("tools"):
        tokens += estimate_tokens(orjson.dumps(raw["tools"], default=str).decode())
    return tokens + MESSAGE_OVERHEAD_TOKENS * count + 3


def reachable(gateway: ProviderRouter, model: str | None,
              deployment: str | None) -> list[tuple[Deployment, ModelRoute | None]]:
    """Every deployment a request may end up on: the model's, then its fallbacks'."""
    if deployment is not None:
        dep = gateway.dedicated(deployment)
        return [(dep, gateway.route_of(dep))]
    first = gateway.resolve(model)
    chain = [first] + [gateway.routes[name] for name in first.fallbacks]
    return [(gateway.deployments[d], route) for route in chain for d in route.deployments]


def worst_case(request: Request, body: ChatCompletionRequest, raw: dict[str, Any],
               deployment: str | None) -> WorstCase:
    """The request's most tokens and cost (see the module's docstring), computed when asked."""

    def compute() -> tuple[int, float]:
        gateway: ProviderRouter = request.app.state.router
        settings = request.app.state.settings
        prompt = prompt_estimate(gateway, raw)
        draws = samples_to_draw(body)
        most_tokens, most_usd = 0, 0.0
        for dep, route in reachable(gateway, body.model, deployment):
            limit = body.completion_limit
            if limit is None and dep.kind == "local":
                limit = settings.default_max_tokens or _context_rest(request, dep, prompt)
            output = draws * (limit or settings.reserve_output_tokens)
            most_tokens = max(most_tokens, prompt + output)
            most_usd = max(most_usd, gateway.price(dep, route).cost(prompt, output))
        return most_tokens, most_usd

    return compute


def _context_rest(request: Request, dep: Deployment, prompt: int) -> int | None:
    try:
        context = request.app.state.catalog.get(dep.id).context_length
    except Exception:  # noqa: BLE001 - not loaded (yet): the upstream default applies
        return None
    return max(1, context - prompt)


def cut_off(request: Request, raw: dict[str, Any], model: str | None, deployment: str | None,
            runs: list[ChatRun], clock: RequestClock) -> Outcome:
    """A non-streamed request whose client hung up (499), charged what it used: a local run's
    prompt and the tokens decoded before it was cancelled; for an upstream, which sends nothing
    back before its whole answer, the prompt it was sent (estimated, at the dearest price the
    request could reach)."""
    gateway: ProviderRouter = request.app.state.router
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
        usage = {"prompt_tokens": prompt_estimate(gateway, raw), "completion_tokens": 0}
        try:
            prices = [gateway.price(d, r) for d, r in reachable(gateway, model, deployment)]
        except Exception:  # noqa: BLE001 - the model is gone from the config: no price known
            prices = []
        price = max(prices, key=lambda p: p.cost(usage["prompt_tokens"], 0), default=Price())
        estimated = True
    metrics = response_metrics(usage, price, clock, estimated)
    return Outcome(499, dep.id if dep else None, dep.kind if dep else None, metrics,
                   error="the client disconnected")


def answered(answer: Answer) -> Outcome:
    completion = answer.completion
    usage = completion.get("usage") or {}
    return Outcome(
        200, answer.deployment.id, answer.deployment.kind, completion.get("metrics"),
        cached_tokens=_cached(usage),
        output=[c.get("message") for c in completion.get("choices") or ()],
    )


async def close_stream(stream: RoutedStream, admission: Admission) -> None:
    """End a stream and settle its request, once: after its frames, or in the response's
    background when a client already gone cancelled the response before its frames started."""
    await stream.aclose()
    await admission.finish(streamed(stream))


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


def _cached(usage: dict[str, Any]) -> int:
    return int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
