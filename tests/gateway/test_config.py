"""Gateway config validation, prices and the constraint dialects (no servers)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from switchboard.gateway.accounting import RequestClock, UsageCounter, response_metrics
from switchboard.gateway.config import GatewayConfig, Price, allows_key_ref
from switchboard.gateway.providers.dialects import translate_constraint
from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.serving import Unsupported

UP = {"id": "up", "provider": "openai-compatible", "base_url": "http://h/v1", "model": "m"}


@pytest.mark.parametrize("config, message", [
    ({"deployments": [UP, UP]}, "deployment id 'up' is defined twice"),
    ({"deployments": [UP], "models": [{"name": "a", "deployments": ["nope"]}]},
     "unknown deployment 'nope'"),
    ({"deployments": [UP], "models": [{"name": "a", "deployments": ["up"], "fallbacks": ["b"]}]},
     "unknown fallback model 'b'"),
    ({"deployments": [UP], "models": [{"name": "a", "aliases": ["x"], "deployments": ["up"]},
                                      {"name": "x", "deployments": ["up"]}]},
     "'x' is defined twice"),
    ({"deployments": [{**UP, "api_key_secret": "k"}]}, "api_key_secret 'k' is not in secrets"),
    ({"deployments": [{**UP, "base_url": None}]}, "base_url is required"),
    ({"deployments": [{**UP, "model": None}]}, "model (the upstream's name) is required"),
    ({"deployments": [{"id": "l", "provider": "local", "base_url": "http://x"}]},
     "a local deployment takes no base_url"),
    ({"deployments": [{**UP, "provider": "nope"}]}, "provider"),
    ({"deployments": [{**UP, "tiemout_s": 3}]}, "tiemout_s"),
    ({"deployments": [UP], "secrets": {"k": {"value": "s", "deployments": ["nope"]}}},
     "secret 'k': unknown deployment 'nope'"),
    ({"deployments": [UP, {"id": "l", "provider": "local"}],
      "secrets": {"k": {"env": "K", "deployments": ["l"]}}},
     "secret 'k': deployment 'l' is local and sends no key"),
])
def test_bad_configs_are_named(config: dict, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        GatewayConfig.model_validate(config)
    assert message in str(caught.value)


def test_a_secret_reaches_requests_only_where_it_is_bound() -> None:
    config = GatewayConfig.model_validate({
        "secrets": {"own": "s1", "bound": {"value": "s2", "deployments": ["b"]}},
        "deployments": [{**UP, "id": "a", "api_key_secret": "own"}, {**UP, "id": "b"},
                        {"id": "l", "provider": "local"}],
    })
    a, b, local = config.deployments
    assert allows_key_ref(config.secrets, "own", a) and not allows_key_ref(config.secrets, "own", b)
    assert allows_key_ref(config.secrets, "bound", b)
    assert not allows_key_ref(config.secrets, "bound", a)
    assert not allows_key_ref(config.secrets, "own", local)
    assert not allows_key_ref(config.secrets, "unknown", a)


def test_defaults_serve_unlisted_deployments_under_their_id() -> None:
    config = GatewayConfig.model_validate({"deployments": [UP]}).with_defaults("smol", None)
    assert [m.name for m in config.models] == ["up"]
    default = GatewayConfig().with_defaults("smol", None)
    assert [(d.id, d.provider) for d in default.deployments] == [("smol", "local")]


def test_price_counts_cached_tokens_at_their_price() -> None:
    price = Price(input_per_million=2.0, output_per_million=10.0, cached_input_per_million=0.5)
    assert price.cost(1_000, 100, cached_tokens=400) == pytest.approx(
        (600 * 2 + 400 * 0.5 + 100 * 10) / 1e6)
    assert Price(input_per_million=1.0).cost(1_000, 0, 1_000) == pytest.approx(0.001)


def test_metrics_from_a_clock() -> None:
    clock = RequestClock(start=10.0, first_token=10.5, end=12.5)
    metrics = response_metrics({"prompt_tokens": 7, "completion_tokens": 5}, Price(), clock)
    assert metrics["latency_s"] == 2.5 and metrics["time_to_first_token_s"] == 0.5
    assert metrics["inter_token_latency_s"] == 0.5 and metrics["tokens_per_second"] == 2.0
    counter = UsageCounter()
    assert counter.observe_chunk({"choices": [{"delta": {"content": "hello there"}}]})
    usage, estimated = counter.final({"messages": [{"role": "user", "content": "hi"}]}, None)
    assert estimated and usage["prompt_tokens"] == 1 and usage["completion_tokens"] == 3


def _translated(dialect: str, **fields: object) -> dict:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], **fields}
    translate_constraint(body, ChatCompletionRequest.model_validate(body), dialect)
    return body


def test_constraints_are_spelled_in_each_dialect() -> None:
    schema = {"type": "object"}
    assert _translated("vllm", guided_json=schema)["structured_outputs"] == {"json": schema}
    assert _translated("guided", structured_outputs={"regex": "a+"})["guided_regex"] == "a+"
    assert _translated("openai", guided_json=schema)["response_format"]["json_schema"][
        "schema"] == schema
    assert _translated("vllm", guided_choice=["a", "b"])["structured_outputs"] == {
        "choice": ["a", "b"]}
    kept = {"type": "json_object"}
    assert _translated("openai", response_format=kept)["response_format"] == kept
    for dialect in ("openai", "llama.cpp"):
        with pytest.raises(Unsupported) as caught:
            _translated(dialect, guided_choice=["a"])
        assert caught.value.param == "guided_choice"
