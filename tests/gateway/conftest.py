"""Fixtures for the gateway tests: a scriptable upstream and a Switchboard routing to it (and to
the session's default server, as a second Switchboard upstream), shared by the package."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
import yaml

from tests.conftest import API_KEY, RunningServer, free_port, start_server, stop_server
from tests.gateway.upstream import FakeUpstream, running_upstream

ADMIN_KEY = "sb-admin-gateway-test-0123456789"
TELKOM_KEY = "telkom-upstream-secret-123"
OTHER_KEY = "sk-other-upstream-456"
MSG = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="package")
def fake() -> Iterator[FakeUpstream]:
    with running_upstream() as upstream:
        yield upstream


@pytest.fixture(autouse=True)
def _fresh_script(fake: FakeUpstream) -> None:
    fake.script.clear()
    fake.requests.clear()
    fake.abandoned = 0


def gateway_config(fake: FakeUpstream, second: RunningServer) -> dict:
    def upstream(id_: str, prefix: str, **extra: object) -> dict:
        return {"id": id_, "provider": "openai-compatible", "base_url": fake.url(prefix + "/v1"),
                "model": f"{id_}-upstream-name", **extra}

    return {
        # "other": a request's api_key_ref may send it to telkom and lone (and to pair-a,
        # claude and embedder, whose own key it is); "second" only to its own deployment.
        "secrets": {"telkom": {"env": "TEST_TELKOM_KEY"},
                    "other": {"value": OTHER_KEY, "deployments": ["telkom", "lone"]},
                    "second": API_KEY},
        "deployments": [
            {"id": "smol", "provider": "local"},
            {"id": "smol-dedicated", "provider": "local", "dedicated": True,
             "reserved_sequences": 4},
            upstream("telkom", "/telkom", auth="x-api-key", api_key_secret="telkom"),
            upstream("pair-a", "/pair-a", weight=3, api_key_secret="other"),
            upstream("pair-b", "/pair-b"),
            upstream("cool-a", "/cool-a", failures_before_cooldown=1, cooldown_s=2),
            upstream("cool-b", "/cool-b"),
            upstream("flaky", "/flaky", timeout_s=1, stall_timeout_s=1),
            # each test of stalls and key references has its own, never cooling down
            upstream("watchdog", "/watchdog", stall_timeout_s=1, cooldown_s=0),
            upstream("patient", "/patient", stall_timeout_s=30, cooldown_s=0),
            upstream("lone", "/lone", cooldown_s=0),
            upstream("dedicated", "/dedicated", dedicated=True),
            {"id": "dead", "provider": "openai-compatible", "model": "x",
             "base_url": f"http://127.0.0.1:{free_port()}/v1", "connect_timeout_s": 1},
            {"id": "claude", "provider": "anthropic", "base_url": fake.url("/anth"),
             "model": "claude-test", "api_key_secret": "other"},
            upstream("embedder", "/embedder", api_key_secret="other"),
            {"id": "second", "provider": "openai-compatible", "base_url": second.v1,
             "model": "smollm2-135m-instruct", "api_key_secret": "second", "dialect": "vllm"},
        ],
        "models": [
            {"name": "smollm2", "deployments": ["smol"]},
            {"name": "telkom-model", "aliases": ["telkom"], "deployments": ["telkom"],
             "backoff_s": 0, "price": {"input_per_million": 1000, "output_per_million": 2000}},
            {"name": "pair", "deployments": ["pair-a", "pair-b"], "retries": 0},
            {"name": "cool", "deployments": ["cool-a", "cool-b"], "backoff_s": 0},
            {"name": "flaky", "deployments": ["flaky"], "retries": 0},
            {"name": "flaky-retried", "deployments": ["flaky"], "retries": 1, "backoff_s": 0},
            {"name": "watchdog", "deployments": ["watchdog"], "retries": 0},
            {"name": "patient", "deployments": ["patient"], "retries": 0},
            {"name": "lone-then-spare", "deployments": ["lone"], "retries": 0,
             "fallbacks": ["spare"]},
            {"name": "spare", "deployments": ["pair-b"]},
            {"name": "with-fallback", "deployments": ["dead"], "retries": 1, "backoff_s": 0,
             "fallbacks": ["telkom-model"]},
            {"name": "claude", "deployments": ["claude"]},
            {"name": "remote-smol", "deployments": ["second"]},
            {"name": "text-embedding-3-small", "deployments": ["embedder"], "backoff_s": 0,
             "price": {"input_per_million": 20, "output_per_million": 0}},
        ],
    }


@pytest.fixture(scope="package")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream, server: RunningServer
) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("gateway")
    config = tmp / "switchboard.yaml"
    config.write_text(yaml.safe_dump(gateway_config(fake, server)))
    srv = start_server(tmp, "--config", str(config), "--api-key", API_KEY,
                       "--admin-key", ADMIN_KEY, env={"TEST_TELKOM_KEY": TELKOM_KEY})
    yield srv
    stop_server(srv)


@pytest.fixture
def client(gateway: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=API_KEY, max_retries=0, timeout=30)
