"""Per-response usage, timing and cost: the LLMstudio ``metrics`` object every answer carries.

``input_tokens``, ``output_tokens``, ``total_tokens``, ``cost_usd``, ``latency_s``,
``time_to_first_token_s``, ``inter_token_latency_s``, ``tokens_per_second``. Usage comes from the
provider; when an upstream reports none, tokens are counted here (with a local model's tokenizer
when one is loaded, else ~4 bytes a token) and the metrics say ``usage_estimated: true``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from switchboard.gateway.config import Price

Tokenize = Callable[[str], int]  # text -> token count


def estimate_tokens(text: str, tokenize: Tokenize | None = None) -> int:
    if not text:
        return 0
    if tokenize is not None:
        return tokenize(text)
    return max(1, math.ceil(len(text.encode()) / 4))


def prompt_text(body: dict[str, Any]) -> str:
    """Every piece of text a request sends (for estimating its input tokens)."""
    parts: list[str] = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
        for call in (message.get("tool_calls") or []) if isinstance(message, dict) else []:
            fn = call.get("function") or {}
            parts.append(f"{fn.get('name', '')}{fn.get('arguments', '')}")
    return "\n".join(parts)


@dataclass
class RequestClock:
    """When a request started, when its first token arrived and when it ended (monotonic)."""

    start: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    end: float | None = None

    def token(self) -> None:
        if self.first_token is None:
            self.first_token = time.perf_counter()

    def stop(self) -> None:
        self.end = time.perf_counter()


@dataclass
class UsageCounter:
    """Usage as the provider reported it, else counted from the text seen."""

    usage: dict[str, Any] | None = None
    text: list[str] = field(default_factory=list)

    def observe_chunk(self, chunk: dict[str, Any]) -> bool:
        """Note a streamed chunk's usage and text; True when it carried content or a tool call."""
        usage = chunk.get("usage")
        if usage:
            self.usage = usage
        produced = False
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                self.text.append(content)
                produced = True
            for call in delta.get("tool_calls") or ():
                self.text.append((call.get("function") or {}).get("arguments") or "")
                produced = True
        return produced

    def observe_completion(self, completion: dict[str, Any]) -> None:
        self.usage = completion.get("usage") or None
        if self.usage:
            return
        for choice in completion.get("choices") or ():
            message = choice.get("message") or {}
            self.text.append(message.get("content") or "")
            for call in message.get("tool_calls") or ():
                self.text.append((call.get("function") or {}).get("arguments") or "")

    def final(self, body: dict[str, Any], tokenize: Tokenize | None) -> tuple[dict[str, Any], bool]:
        """OpenAI ``usage`` (never all zero when something was produced), and whether estimated."""
        usage = self.usage
        if usage and (usage.get("prompt_tokens") or usage.get("completion_tokens")):
            return usage, False
        prompt = estimate_tokens(prompt_text(body), tokenize)
        completion = estimate_tokens("".join(self.text), tokenize)
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}, True


def response_metrics(
    usage: dict[str, Any], price: Price, clock: RequestClock, estimated: bool = False
) -> dict[str, Any]:
    end = clock.end if clock.end is not None else time.perf_counter()
    latency = end - clock.start
    first = clock.first_token if clock.first_token is not None else end
    ttft = first - clock.start
    inputs = int(usage.get("prompt_tokens") or 0)
    outputs = int(usage.get("completion_tokens") or 0)
    cached = int(((usage.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0)
    metrics = {
        "input_tokens": inputs,
        "output_tokens": outputs,
        "total_tokens": inputs + outputs,
        "cost_usd": price.cost(inputs, outputs, cached),
        "latency_s": round(latency, 6),
        "time_to_first_token_s": round(ttft, 6),
        "inter_token_latency_s": round((end - first) / (outputs - 1), 6) if outputs > 1 else 0.0,
        "tokens_per_second": round(outputs / latency, 3) if latency > 0 else 0.0,
    }
    details = usage.get("completion_tokens_details") or {}
    accepted = int(details.get("accepted_prediction_tokens") or 0)
    rejected = int(details.get("rejected_prediction_tokens") or 0)
    if accepted or rejected:  # a local model's speculative tokens (predicted outputs upstream)
        metrics["spec_drafted_tokens"] = accepted + rejected
        metrics["spec_accepted_tokens"] = accepted
    if estimated:
        metrics["usage_estimated"] = True
    return metrics
