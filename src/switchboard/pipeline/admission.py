"""What a request may cost, reckoned before it runs: the deployments it may reach and its worst
case, which admission holds against the caller's limits and budget.

A request's worst case: its prompt's estimated tokens plus, per choice, ``max_tokens``, else the
rest of a local model's context (or ``default_max_tokens``), else ``reserve_output_tokens`` for an
upstream; priced at the dearest deployment the request may reach (fallbacks included)."""

from __future__ import annotations

import orjson

from switchboard.gateway.accounting import estimate_tokens, prompt_text
from switchboard.gateway.config import ModelRoute
from switchboard.gateway.router import Deployment, ProviderRouter
from switchboard.governance.governor import WorstCase
from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.serving import ModelCatalog
from switchboard.serving.params import samples_to_draw
from switchboard.settings import Settings

MESSAGE_OVERHEAD_TOKENS = 4  # a chat template's role and separator tokens, per message


def prompt_estimate(gateway: ProviderRouter, request: ChatCompletionRequest) -> int:
    """The prompt's tokens as estimated before it is rendered (messages, tool calls, tools)."""
    body = request.wire()
    tokens = estimate_tokens(prompt_text(body), gateway.tokenize)
    if body.get("tools"):
        tokens += estimate_tokens(orjson.dumps(body["tools"], default=str).decode())
    return tokens + MESSAGE_OVERHEAD_TOKENS * len(request.messages) + 3


def reachable(gateway: ProviderRouter, model: str | None,
              deployment: str | None) -> list[tuple[Deployment, ModelRoute | None]]:
    """Every deployment a request may end up on: the model's, then its fallbacks'."""
    if deployment is not None:
        dep = gateway.dedicated(deployment)
        return [(dep, gateway.route_of(dep))]
    first = gateway.resolve(model)
    chain = [first] + [gateway.routes[name] for name in first.fallbacks]
    return [(gateway.deployments[d], route) for route in chain for d in route.deployments]


def worst_case(gateway: ProviderRouter, settings: Settings, catalog: ModelCatalog,
               request: ChatCompletionRequest, deployment: str | None) -> WorstCase:
    """The request's most tokens and cost (see the module's docstring), computed when asked."""

    def compute() -> tuple[int, float]:
        prompt = prompt_estimate(gateway, request)
        draws = samples_to_draw(request)
        most_tokens, most_usd = 0, 0.0
        for dep, route in reachable(gateway, request.model, deployment):
            limit = request.completion_limit
            if limit is None and dep.kind == "local":
                limit = settings.default_max_tokens or _context_rest(catalog, dep, prompt)
            output = draws * (limit or settings.reserve_output_tokens)
            most_tokens = max(most_tokens, prompt + output)
            most_usd = max(most_usd, gateway.price(dep, route).cost(prompt, output))
        return most_tokens, most_usd

    return compute


def _context_rest(catalog: ModelCatalog, dep: Deployment, prompt: int) -> int | None:
    try:
        context = catalog.get(dep.id).context_length
    except Exception:  # noqa: BLE001 - not loaded (yet): the upstream default applies
        return None
    return max(1, context - prompt)
