"""Property-based tests of the whole HTTP API from its own OpenAPI schema (Schemathesis), against
a real server with an admin key and a user key: for every operation and every generated request,
valid or not, no 5xx, and only status codes and content types the schema declares.

Bounded: a fixed seed, a few examples per operation (``MAX_EXAMPLES``), no shrinking, and
generation capped at a few tokens (``bound_generation``) so that the embedded model never writes
long answers. A failure prints the request as a curl command.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from tests.conftest import RunningServer, start_server, stop_server, wait_ready

ADMIN_KEY = "sb-schemathesis-admin-0123456789"
USER_KEY = "sk-schemathesis-user-0123456789"
SEED = 21
MAX_EXAMPLES = 8
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]
MAX_NEW_TOKENS = 4
# Operations that run the model, and where their sampling parameters sit in the body.
GENERATING = {
    "/v1/chat/completions": (),
    "/deployments/{deployment_id}/v1/chat/completions": (),
    "/api/engine/chat/{provider}": ("parameters",),
    "/v1/messages": (),
    "/v1/responses": (),
    "/v1/completions": (),
}
# A short context: a long generated prompt is refused at once instead of read for seconds.
BOUNDED_ENGINE = {"SWITCHBOARD_N_CTX": "1024", "SWITCHBOARD_MAX_SEQUENCES": "2",
                  "SWITCHBOARD_DEFAULT_MAX_TOKENS": str(MAX_NEW_TOKENS)}
CAPS = {"max_tokens": MAX_NEW_TOKENS, "max_completion_tokens": MAX_NEW_TOKENS,
        "min_tokens": MAX_NEW_TOKENS, "n": 2, "best_of": 2, "max_output_tokens": MAX_NEW_TOKENS}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(tmp_path_factory.mktemp("schemathesis"), "--api-key", USER_KEY,
                       "--admin-key", ADMIN_KEY, env=BOUNDED_ENGINE, wait=False)
    wait_ready(srv, timeout=180)  # both models load first
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def api_schema(fuzzed: RunningServer) -> Any:
    config = schemathesis.Config.from_dict({
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
        "phases": {"stateful": {"enabled": False}, "coverage": {"enabled": False}},
    })
    return schemathesis.openapi.from_url(fuzzed.base + "/openapi.json", config=config, timeout=60)


schema = schemathesis.pytest.from_fixture("api_schema")


def bound_generation(case: Case) -> None:
    """Cap how much a generated chat request may ask the model to write."""
    if case.operation.path not in GENERATING or not isinstance(case.body, dict):
        return
    target: Any = case.body
    for key in GENERATING[case.operation.path]:
        target = target.setdefault(key, {}) if isinstance(target, dict) else None
    if not isinstance(target, dict):
        return
    for name, cap in CAPS.items():
        value = target.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > cap:
            target[name] = cap
    if case.operation.path == "/v1/responses":
        target.setdefault("max_output_tokens", MAX_NEW_TOKENS)
    elif "max_tokens" not in target and "max_completion_tokens" not in target:
        target["max_tokens"] = MAX_NEW_TOKENS


def call(case: Case, server: RunningServer, key: str) -> None:
    bound_generation(case)
    case.call_and_validate(base_url=server.base, headers={"authorization": f"Bearer {key}"},
                           checks=CHECKS, timeout=60)


BOUNDED = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                   phases=[Phase.explicit, Phase.generate],
                   suppress_health_check=list(HealthCheck))


@schema.parametrize()
@BOUNDED
def test_api_as_admin(case: Case, fuzzed: RunningServer) -> None:
    call(case, fuzzed, ADMIN_KEY)


@schema.parametrize()
@BOUNDED
def test_api_as_user(case: Case, fuzzed: RunningServer) -> None:
    call(case, fuzzed, USER_KEY)


def test_schema_declares_error_bodies_and_other_content_types(api_schema: Any) -> None:
    """The statuses and types the checks above hold the server to are in the schema at all."""
    paths = api_schema.raw_schema["paths"]
    assert "text/csv" in paths["/admin/usage"]["get"]["responses"]["200"]["content"]
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
    for path, methods in paths.items():
        for method, operation in methods.items():
            if path not in ("/health", "/metrics"):
                assert "401" in operation["responses"], (method, path)
