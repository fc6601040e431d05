"""Fixtures for the governance tests: a fake upstream (deterministic usage: 11 prompt tokens and
6 completion tokens per answer) and Switchboard servers governing it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.conftest import RunningServer, start_server, stop_server
from tests.gateway.conftest import _fresh_script, fake  # noqa: F401 - this package's own
from tests.gateway.upstream import FakeUpstream

ADMIN_KEY = "sb-admin-test-key-0123456789"
STATIC_KEY = "sk-static-test-key-9876543210"
TOKENS_PER_ANSWER = 17
COST_PER_PAID_ANSWER = 11.0  # $1 per input token, output free


def governed_config(fake: FakeUpstream) -> dict:
    return {
        "deployments": [{"id": "up", "provider": "openai-compatible",
                         "base_url": fake.url("/up/v1"),
                         "model": "upstream-model", "stall_timeout_s": 10}],
        "models": [
            {"name": "free", "deployments": ["up"], "retries": 0},
            {"name": "paid", "aliases": ["paid-alias"], "deployments": ["up"], "retries": 0,
             "price": {"input_per_million": 1_000_000, "output_per_million": 0}},
            {"name": "limited", "deployments": ["up"], "retries": 0, "rpm": 2},
        ],
    }


def start_governed(tmp: Path, fake: FakeUpstream, *args: str,
                   env: dict[str, str] | None = None) -> RunningServer:
    config = tmp / "switchboard.yaml"
    config.write_text(yaml.safe_dump(governed_config(fake)))
    return start_server(tmp, "--config", str(config), "--admin-key", ADMIN_KEY,
                        "--api-key", STATIC_KEY, *args,
                        env={"SWITCHBOARD_KEY_CACHE_TTL_S": "0.3", **(env or {})})


@pytest.fixture(scope="package")
def governed(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream
) -> Iterator[RunningServer]:
    srv = start_governed(tmp_path_factory.mktemp("governed"), fake)
    yield srv
    stop_server(srv)


class Admin:
    """The admin API of one server."""

    def __init__(self, server: RunningServer) -> None:
        self.http = httpx.Client(base_url=server.base, timeout=10,
                                 headers={"authorization": f"Bearer {ADMIN_KEY}"})

    def create_key(self, **spec: object) -> dict:
        r = self.http.post("/admin/keys", json={"name": "test", **spec})
        assert r.status_code == 201, r.text
        return r.json()

    def usage(self, **params: object) -> dict:
        r = self.http.get("/admin/usage", params=params)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def admin(governed: RunningServer) -> Iterator[Admin]:
    a = Admin(governed)
    yield a
    a.http.close()


def sdk(server: RunningServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.v1, api_key=key, max_retries=0, timeout=30)


MSG = [{"role": "user", "content": "Hello"}]
