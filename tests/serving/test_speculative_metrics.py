"""``/metrics`` counts speculative tokens with vLLM's names and their acceptance rate."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from switchboard.engine import RequestMetrics
from switchboard.serving.metrics import ServingMetrics


def finished(drafted: int, accepted: int) -> RequestMetrics:
    return RequestMetrics(queue_time=0.0, time_to_first_token=0.1, decode_time=1.0,
                          prompt_tokens=10, cached_tokens=0, generated_tokens=20,
                          spec_drafted_tokens=drafted, spec_accepted_tokens=accepted)


def samples(metrics: ServingMetrics) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels.get("model_name", "")): s.value
            for family in text_string_to_metric_families(metrics.render().decode())
            for s in family.samples}


def test_speculative_tokens_and_acceptance_rate() -> None:
    metrics = ServingMetrics(lambda: {})
    metrics.observe("m", "stop", finished(10, 6))
    metrics.observe("m", "length", finished(0, 0))  # did not speculate
    metrics.observe("m", "stop", finished(30, 26))
    metrics.observe("other", "stop", finished(4, 1))
    got = samples(metrics)
    assert got[("switchboard:spec_decode_num_draft_tokens_total", "m")] == 40
    assert got[("switchboard:spec_decode_num_accepted_tokens_total", "m")] == 32
    assert got[("switchboard:spec_decode_draft_acceptance_rate", "m")] == 0.8
    assert got[("switchboard:spec_decode_draft_acceptance_rate", "other")] == 0.25


def test_request_metrics_report_speculative_tokens() -> None:
    """The local chat answer's usage carries them as OpenAI's prediction tokens; the request's
    ``metrics`` name them."""
    from switchboard.gateway.accounting import RequestClock, response_metrics
    from switchboard.gateway.config import Price
    from switchboard.serving.chat import _usage

    usage = _usage(20, 30, 0, drafted=12, accepted=9).model_dump()
    assert usage["completion_tokens_details"]["accepted_prediction_tokens"] == 9
    assert usage["completion_tokens_details"]["rejected_prediction_tokens"] == 3
    metrics = response_metrics(usage, Price(), RequestClock())
    assert (metrics["spec_drafted_tokens"], metrics["spec_accepted_tokens"]) == (12, 9)
    plain = response_metrics(_usage(20, 30, 0, 0, 0).model_dump(), Price(), RequestClock())
    assert "spec_drafted_tokens" not in plain
