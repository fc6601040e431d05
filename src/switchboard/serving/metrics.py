"""Prometheus metrics with vLLM-style names (``switchboard:…``), labelled by model.

Request-level histograms and counters are observed when a sequence finishes; engine gauges
(running, waiting, KV usage) are read from each engine at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from switchboard.engine import RequestMetrics

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

EngineStats = Callable[[], dict[str, dict[str, int]]]  # model id -> Engine.stats()


class _EngineGauges(Collector):
    def __init__(self, stats: EngineStats) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        running = GaugeMetricFamily(
            "switchboard:num_requests_running", "Sequences being decoded.", labels=["model_name"]
        )
        waiting = GaugeMetricFamily(
            "switchboard:num_requests_waiting", "Sequences waiting to run.", labels=["model_name"]
        )
        kv = GaugeMetricFamily(
            "switchboard:kv_cache_usage_perc", "Share of KV cells in use (0-1).",
            labels=["model_name"],
        )
        for model, stats in self._stats().items():
            running.add_metric([model], stats["running"])
            waiting.add_metric([model], stats["waiting"])
            kv.add_metric([model], stats["kv_used"] / max(1, stats["kv_cells"]))
        return [running, waiting, kv]


class ServingMetrics:
    def __init__(self, engine_stats: EngineStats) -> None:
        self.registry = CollectorRegistry()

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(f"switchboard:{name}", doc, ["model_name"], buckets=buckets,
                             registry=self.registry)

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(f"switchboard:{name}", doc, ["model_name", *labels],
                           registry=self.registry)

        self.ttft = histogram(
            "time_to_first_token_seconds", "Time to first token.", LATENCY_BUCKETS
        )
        self.tpot = histogram(
            "time_per_output_token_seconds", "Time per output token after the first.",
            TOKEN_BUCKETS,
        )
        self.e2e = histogram(
            "e2e_request_latency_seconds", "Submission to last token.", LATENCY_BUCKETS
        )
        self.queue = histogram(
            "request_queue_time_seconds", "Time waiting before the first step.", LATENCY_BUCKETS
        )
        self.prompt_tokens = counter("prompt_tokens", "Prompt tokens processed.")
        self.generation_tokens = counter("generation_tokens", "Tokens generated.")
        self.cached_tokens = counter(
            "prefix_cache_hits", "Prompt tokens served from the prefix cache."
        )
        self.finished = counter(
            "request_success", "Finished sequences by finish reason.", "finished_reason"
        )
        # Speculative decoding (vLLM's names): tokens drafted, of which accepted, and their share.
        self.spec_drafted = counter(
            "spec_decode_num_draft_tokens", "Speculative (prompt-lookup) tokens drafted.")
        self.spec_accepted = counter(
            "spec_decode_num_accepted_tokens", "Drafted tokens the model accepted.")
        self.spec_rate = Gauge(
            "switchboard:spec_decode_draft_acceptance_rate",
            "Accepted share of the drafted tokens so far (0-1).", ["model_name"],
            registry=self.registry)
        self._spec_totals: dict[str, tuple[int, int]] = {}  # model -> (drafted, accepted)
        self.registry.register(_EngineGauges(engine_stats))

    def observe(self, model: str, finish_reason: str, m: RequestMetrics) -> None:
        self.ttft.labels(model).observe(m.time_to_first_token)
        if m.generated_tokens > 1:
            self.tpot.labels(model).observe(m.time_per_output_token)
        self.e2e.labels(model).observe(m.time_to_first_token + m.decode_time)
        self.queue.labels(model).observe(m.queue_time)
        self.prompt_tokens.labels(model).inc(m.prompt_tokens)
        self.generation_tokens.labels(model).inc(m.generated_tokens)
        self.cached_tokens.labels(model).inc(m.cached_tokens)
        self.finished.labels(model, finish_reason).inc()
        if m.spec_drafted_tokens:
            self.spec_drafted.labels(model).inc(m.spec_drafted_tokens)
            self.spec_accepted.labels(model).inc(m.spec_accepted_tokens)
            drafted, accepted = self._spec_totals.get(model, (0, 0))
            drafted, accepted = drafted + m.spec_drafted_tokens, accepted + m.spec_accepted_tokens
            self._spec_totals[model] = (drafted, accepted)
            self.spec_rate.labels(model).set(accepted / drafted)

    def render(self) -> bytes:
        return generate_latest(self.registry)
