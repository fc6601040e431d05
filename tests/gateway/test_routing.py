"""The gateway end to end: a Switchboard routing to a scriptable test upstream (OpenAI and
Anthropic formats) and to a second Switchboard, through the official SDKs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.conftest import API_KEY, RunningServer
from tests.gateway.conftest import MSG, OTHER_KEY, TELKOM_KEY
from tests.gateway.upstream import FakeUpstream


def post(gateway: RunningServer, body: dict, path: str = "/v1/chat/completions") -> httpx.Response:
    return httpx.post(gateway.base + path, json=body, timeout=30,
                      headers={"Authorization": f"Bearer {API_KEY}"})


def metric(gateway: RunningServer, name: str, **labels: str) -> float:
    text = httpx.get(gateway.base + "/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_upstream_gets_its_key_as_x_api_key_and_the_answer_carries_metrics_and_cost(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    completion = client.chat.completions.create(model="telkom", messages=MSG)
    assert completion.choices[0].message.content == "telkom:answer from the fake upstream"
    sent = fake.requests[-1]
    assert sent.headers["x-api-key"] == TELKOM_KEY and "Authorization" not in sent.headers
    assert sent.body["model"] == "telkom-upstream-name" and sent.body["stream"] is False
    metrics = completion.model_extra["metrics"]
    assert metrics["input_tokens"] == 11 and metrics["output_tokens"] == 6
    assert metrics["cost_usd"] == pytest.approx((11 * 1000 + 6 * 2000) / 1e6)
    assert metrics["latency_s"] > 0 and metrics["tokens_per_second"] > 0


def test_streams_pass_through_and_usage_is_asked_upstream(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    chunks = list(client.chat.completions.create(model="telkom", messages=MSG, stream=True))
    assert fake.requests[-1].body["stream_options"] == {"include_usage": True}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "telkom:answer from the fake upstream"
    assert all(c.choices for c in chunks), "the client did not ask for usage"

    chunks = list(client.chat.completions.create(
        model="telkom", messages=MSG, stream=True, stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == [] and last.usage.completion_tokens == 6
    assert last.model_extra["metrics"]["output_tokens"] == 6
    assert last.model_extra["metrics"]["time_to_first_token_s"] > 0


def test_usage_is_counted_when_the_upstream_gives_none(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    fake.script.extend(["no_usage"])
    completion = client.chat.completions.create(model="telkom", messages=MSG)
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    assert completion.model_extra["metrics"]["usage_estimated"] is True
    fake.script.extend(["no_usage"])
    chunks = list(client.chat.completions.create(
        model="telkom", messages=MSG, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens > 0


def test_500_and_429_and_reset_are_retried(
    client: openai.OpenAI, fake: FakeUpstream, gateway: RunningServer
) -> None:
    before = metric(gateway, "switchboard:deployment_failures_total", deployment="telkom")
    fake.script.extend(["500", "429"])
    completion = client.chat.completions.create(model="telkom", messages=MSG)
    assert completion.choices[0].message.content.startswith("telkom:")
    assert len(fake.requests) == 3
    fake.script.extend(["reset"])
    assert client.chat.completions.create(model="flaky-retried", messages=MSG).choices
    assert len(fake.requests) == 5
    after = metric(gateway, "switchboard:deployment_failures_total", deployment="telkom")
    assert after - before == 2


def test_streams_are_retried_before_the_first_byte(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    fake.script.extend(["500"])
    chunks = list(client.chat.completions.create(model="telkom", messages=MSG, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks).startswith("telkom:")
    assert len(fake.requests) == 2


def test_upstream_client_errors_pass_through_without_retry(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    fake.script.extend(["400"])
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="telkom", messages=MSG)
    assert caught.value.body["message"] == "simulated 400"
    assert caught.value.body["param"] == "messages"
    assert len(fake.requests) == 1


def test_exhausted_429_reaches_the_client_with_retry_after(
    gateway: RunningServer, fake: FakeUpstream
) -> None:
    fake.script.extend(["429"])
    r = post(gateway, {"model": "flaky", "messages": MSG})
    assert r.status_code == 429 and "Retry-After" in r.headers
    assert r.json()["error"]["code"] == "rate_limited"


def test_a_429_with_retry_after_is_waited_out_and_retried_without_a_cooldown(
    gateway: RunningServer, fake: FakeUpstream
) -> None:
    fake.script.extend(["429_wait"])  # Retry-After: 1
    started = time.monotonic()
    r = post(gateway, {"model": "flaky-retried", "messages": MSG})
    assert r.status_code == 200 and r.headers["x-switchboard-deployment"] == "flaky"
    assert fake.paths() == ["/flaky/v1/chat/completions"] * 2
    assert 1 <= time.monotonic() - started < 4
    assert metric(gateway, "switchboard:deployment_cooldown", deployment="flaky") == 0


def test_timeout_gives_504_without_hanging(gateway: RunningServer, fake: FakeUpstream) -> None:
    fake.script.extend(["timeout"])
    started = time.monotonic()
    r = post(gateway, {"model": "flaky", "messages": MSG})
    assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - started < 5


def test_a_stream_that_stalls_ends_with_an_in_band_error(
    gateway: RunningServer, fake: FakeUpstream
) -> None:
    fake.script.extend(["stall"])
    started = time.monotonic()
    with httpx.stream("POST", gateway.v1 + "/chat/completions", timeout=30,
                      headers={"Authorization": f"Bearer {API_KEY}"},
                      json={"model": "flaky", "messages": MSG, "stream": True}) as r:
        assert r.status_code == 200
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert time.monotonic() - started < 5
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "upstream_stall"
    assert json.loads(events[1])["choices"][0]["delta"]["content"] == "flaky:"


def test_fallback_to_another_model_when_every_deployment_fails(
    client: openai.OpenAI, gateway: RunningServer
) -> None:
    before = metric(gateway, "switchboard:fallbacks_total", model_name="with-fallback")
    completion = client.chat.completions.create(model="with-fallback", messages=MSG)
    assert completion.choices[0].message.content.startswith("telkom:")
    assert metric(gateway, "switchboard:fallbacks_total", model_name="with-fallback") == before + 1
    assert metric(gateway, "switchboard:deployment_failures_total", deployment="dead",
                  kind="connect") >= 2


def test_weighted_round_robin(client: openai.OpenAI, fake: FakeUpstream) -> None:
    for _ in range(8):
        client.chat.completions.create(model="pair", messages=MSG)
    paths = fake.paths()
    assert paths.count("/pair-a/v1/chat/completions") == 6
    assert paths.count("/pair-b/v1/chat/completions") == 2
    assert fake.requests[0].headers["Authorization"] == f"Bearer {OTHER_KEY}"
    assert "Authorization" not in fake.requests[paths.index("/pair-b/v1/chat/completions")].headers


def test_a_failing_deployment_cools_down_and_recovers(
    client: openai.OpenAI, fake: FakeUpstream, gateway: RunningServer
) -> None:
    fake.script.extend(["500"])
    for _ in range(4):
        client.chat.completions.create(model="cool", messages=MSG)
    paths = fake.paths()
    assert paths[0] == "/cool-a/v1/chat/completions"  # failed, then cooled down
    assert paths[1:] == ["/cool-b/v1/chat/completions"] * 4
    assert metric(gateway, "switchboard:deployment_cooldown", deployment="cool-a") == 1
    time.sleep(2.2)
    for _ in range(4):
        client.chat.completions.create(model="cool", messages=MSG)
    assert "/cool-a/v1/chat/completions" in fake.paths()[5:]
    assert metric(gateway, "switchboard:deployment_cooldown", deployment="cool-a") == 0


def test_api_key_ref_picks_a_stored_key(gateway: RunningServer, fake: FakeUpstream) -> None:
    r = post(gateway, {"model": "telkom", "messages": MSG, "api_key_ref": "other"})
    assert r.status_code == 200
    assert fake.requests[-1].headers["x-api-key"] == OTHER_KEY
    assert "api_key_ref" not in fake.requests[-1].body
    r = post(gateway, {"model": "telkom", "messages": MSG, "api_key_ref": "nope"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "api_key_ref"
    assert OTHER_KEY not in r.text and TELKOM_KEY not in httpx.get(gateway.base + "/metrics").text


def test_dedicated_deployment_has_its_own_path(gateway: RunningServer, fake: FakeUpstream) -> None:
    r = post(gateway, {"model": "anything", "messages": MSG},
             "/deployments/dedicated/v1/chat/completions")
    assert r.status_code == 200 and r.headers["x-switchboard-deployment"] == "dedicated"
    assert fake.requests[-1].path == "/dedicated/v1/chat/completions"
    r = post(gateway, {"model": "x", "messages": MSG}, "/deployments/telkom/v1/chat/completions")
    assert r.status_code == 404
    r = post(gateway, {"model": "dedicated", "messages": MSG})
    assert r.status_code == 404, "a dedicated deployment is not a serverless model"


def test_a_dedicated_local_deployment_shares_the_engine_with_reserved_capacity(
    gateway: RunningServer,
) -> None:
    r = post(gateway, {"model": "smollm2", "messages": MSG, "max_tokens": 3},
             "/deployments/smol-dedicated/v1/chat/completions")
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3
    health = httpx.get(gateway.base + "/health").json()
    assert list(health["models"]) == ["smollm2-135m-instruct"], "one engine for both"
    assert health["deployments"]["smol-dedicated"]["provider"] == "local"


def test_request_id_is_echoed_and_logged(gateway: RunningServer, fake: FakeUpstream) -> None:
    fake.script.extend(["500"])
    r = httpx.post(gateway.v1 + "/chat/completions", timeout=30,
                   headers={"Authorization": f"Bearer {API_KEY}", "x-request-id": "req-abc-123"},
                   json={"model": "telkom", "messages": MSG})
    assert r.status_code == 200 and r.headers["x-request-id"] == "req-abc-123"
    assert "[req-abc-123]" in gateway.log()
    fresh = httpx.get(gateway.base + "/health").headers["x-request-id"]
    assert len(fresh) == 32


def test_models_lists_public_names(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"smollm2", "telkom-model", "claude", "remote-smol"} <= ids
    assert "dedicated" not in ids
    assert client.models.retrieve("telkom").id == "telkom"


def test_a_second_switchboard_as_upstream_enforces_guided_json(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0,
                                                     "maximum": 9}},
              "required": ["n"], "additionalProperties": False}
    completion = client.chat.completions.create(
        model="remote-smol", messages=[{"role": "user", "content": "Pick a digit."}],
        max_tokens=20, extra_body={"guided_json": schema})
    assert 0 <= json.loads(completion.choices[0].message.content)["n"] <= 9
    assert completion.model == "smollm2-135m-instruct"
    stream = client.chat.completions.create(
        model="remote-smol", messages=MSG, max_tokens=5, stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[-1].usage.completion_tokens == 5
    assert chunks[-1].model_extra["metrics"]["output_tokens"] == 5


def test_constraints_an_upstream_cannot_enforce_are_refused(
    gateway: RunningServer, fake: FakeUpstream
) -> None:
    r = post(gateway, {"model": "telkom", "messages": MSG, "guided_regex": "[a-z]+"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "guided_regex"
    assert not fake.requests
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    r = post(gateway, {"model": "telkom", "messages": MSG, "guided_json": schema})
    assert r.status_code == 200
    sent = fake.requests[-1].body
    assert "guided_json" not in sent
    assert sent["response_format"]["json_schema"]["schema"] == schema


def test_config_errors_stop_the_server_with_a_clear_message(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"deployments": [{"id": "a", "provider": "local"}],
                                   "models": [{"name": "m", "deployments": ["b"]}]}))
    result = subprocess.run([sys.executable, "-m", "switchboard", "serve", "--config", str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown deployment 'b'" in result.stderr


def test_a_providers_own_option_errors_stop_the_server_with_a_clear_message(
        tmp_path: Path) -> None:
    """A misspelt option only the provider kind knows (checked by its registered options model)
    ends ``serve`` with exit code 2 and the option's name, not a traceback."""
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({
        "deployments": [{"id": "up", "provider": "openai-compatible",
                         "base_url": "http://127.0.0.1:9/v1", "tiemout_s": 3}],
        "models": [{"name": "m", "deployments": ["up"]}]}))
    result = subprocess.run([sys.executable, "-m", "switchboard", "serve", "--config", str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "tiemout_s" in result.stderr and "Traceback" not in result.stderr
