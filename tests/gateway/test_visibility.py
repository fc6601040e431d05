"""A key limited to some models learns nothing of the others: ``GET /v1/models/{id}`` (and its
Telnyx paths) answers 404 ``model_not_found`` for them exactly as for a model that does not
exist, and LLMstudio's listings show only its models."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import API_KEY, RunningServer
from tests.gateway.conftest import ADMIN_KEY

MODEL_PATHS = ("/v1/models/", "/models/", "/v2/ai/models/", "/v2/ai/openai/models/")


@pytest.fixture(scope="module")
def limited(gateway: RunningServer) -> Iterator[httpx.Client]:
    """A client whose key may use only ``telkom-model`` (alias ``telkom``)."""
    r = httpx.post(gateway.base + "/admin/keys", timeout=10,
                   headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                   json={"name": "telkom-only", "models": ["telkom-model"]})
    assert r.status_code == 201, r.text
    with httpx.Client(base_url=gateway.base, timeout=10,
                      headers={"Authorization": f"Bearer {r.json()['key']}"}) as client:
        yield client


def not_found(r: httpx.Response, name: str) -> dict:
    assert r.status_code == 404, r.text
    error = r.json()["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model"
    return {**error, "message": error["message"].replace(name, "NAME")}


def test_a_model_the_key_may_not_use_reads_as_one_that_does_not_exist(
    limited: httpx.Client,
) -> None:
    for path in MODEL_PATHS:
        assert limited.get(path + "telkom").json()["id"] == "telkom"  # its alias
        assert limited.get(path + "telkom-model").status_code == 200
        unknown = not_found(limited.get(path + "no-such-model"), "no-such-model")
        for hidden in ("claude", "smollm2", "all-minilm-l6-v2", "all-MiniLM-L6-v2"):
            assert not_found(limited.get(path + hidden), hidden) == unknown, (path, hidden)
    assert [m["id"] for m in limited.get("/v1/models").json()["data"]] == ["telkom-model"]


def test_an_unlimited_key_sees_every_card(gateway: RunningServer) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    for name in ("claude", "all-minilm-l6-v2"):
        r = httpx.get(f"{gateway.v1}/models/{name}", headers=headers)
        assert r.status_code == 200 and r.json()["id"] == name
    # an empty name is no model (not the default one)
    not_found(httpx.get(gateway.v1 + "/models/", headers=headers), "")


def test_llmstudio_listings_show_only_the_keys_models(limited: httpx.Client) -> None:
    assert limited.get("/api/engine/providers").json() == ["openai-compatible"]
    listing = limited.get("/api/engine/models").json()
    assert listing == {"openai-compatible": {"name": "openai-compatible",
                                             "models": ["telkom-model"]}}
    r = limited.get("/api/engine/models", params={"provider": "anthropic"})
    assert r.status_code == 200 and r.json() == {"name": "anthropic", "models": []}
