"""Per-deployment Prometheus series on the server's one registry (``switchboard:deployment_*``):
requests by outcome, failures by kind, latency and TTFT histograms, in-flight requests, cooldown
state and fallbacks taken."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class GatewayTelemetry:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["deployment", "provider"]
        self.requests = Counter(
            "switchboard:deployment_requests", "Attempts sent to a deployment, by outcome.",
            [*labels, "outcome"], registry=registry,
        )
        self.failures = Counter(
            "switchboard:deployment_failures", "Failed attempts by kind.", [*labels, "kind"],
            registry=registry,
        )
        self.latency = Histogram(
            "switchboard:deployment_latency_seconds", "Attempt start to last byte.", labels,
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.ttft = Histogram(
            "switchboard:deployment_time_to_first_token_seconds", "Attempt start to first token.",
            labels, buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.in_flight = Gauge(
            "switchboard:deployment_in_flight", "Requests in progress.", labels,
            registry=registry,
        )
        self.cooldown = Gauge(
            "switchboard:deployment_cooldown", "1 while the deployment is cooling down.", labels,
            registry=registry,
        )
        self.fallbacks = Counter(
            "switchboard:fallbacks", "Requests passed from one model to its fallback.",
            ["model_name", "fallback"], registry=registry,
        )
