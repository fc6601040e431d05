"""A request's ``api_key_ref`` reaches only the deployments its secret is bound to: any other
choice is refused before anything is sent upstream, and fallbacks never carry it elsewhere."""

from __future__ import annotations

import httpx

from tests.conftest import API_KEY, RunningServer
from tests.gateway.conftest import MSG, OTHER_KEY, TELKOM_KEY
from tests.gateway.upstream import FakeUpstream


def post(gateway: RunningServer, body: dict, path: str = "/v1/chat/completions") -> httpx.Response:
    return httpx.post(gateway.base + path, json=body, timeout=30,
                      headers={"Authorization": f"Bearer {API_KEY}"})


def assert_refused(r: httpx.Response, name: str) -> None:
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "api_key_ref" and error["code"] == "api_key_ref_not_allowed"
    assert error["type"] == "invalid_request_error" and name in error["message"]
    assert OTHER_KEY not in r.text and TELKOM_KEY not in r.text and API_KEY not in r.text


def test_a_bound_secret_is_sent_to_its_deployment(
    gateway: RunningServer, fake: FakeUpstream
) -> None:
    r = post(gateway, {"model": "telkom", "messages": MSG, "api_key_ref": "other"})
    assert r.status_code == 200
    assert fake.requests[-1].headers["x-api-key"] == OTHER_KEY
    assert "api_key_ref" not in fake.requests[-1].body


def test_a_secret_is_never_sent_to_a_deployment_it_is_not_bound_to(
    gateway: RunningServer, fake: FakeUpstream
) -> None:
    # "second" is the key of the second Switchboard: telkom's upstream must never see it.
    assert_refused(post(gateway, {"model": "telkom", "messages": MSG, "api_key_ref": "second"}),
                   "second")
    # "telkom" is bound to nothing but its own deployment; cool-a/cool-b take no secret.
    assert_refused(post(gateway, {"model": "cool", "messages": MSG, "api_key_ref": "telkom"}),
                   "telkom")
    # an unknown name reads the same as one not bound (names are not revealed)
    assert_refused(post(gateway, {"model": "telkom", "messages": MSG, "api_key_ref": "nope"}),
                   "nope")
    # streams and dedicated deployments are refused the same way
    assert_refused(post(gateway, {"model": "telkom", "messages": MSG, "stream": True,
                                  "api_key_ref": "second"}), "second")
    assert_refused(post(gateway, {"model": "x", "messages": MSG, "api_key_ref": "other"},
                        "/deployments/dedicated/v1/chat/completions"), "other")
    # a local model sends no key: a reference to one is refused, not silently dropped
    assert_refused(post(gateway, {"model": "smollm2", "messages": MSG, "api_key_ref": "other"}),
                   "other")
    assert fake.requests == [], "nothing reached an upstream"


def test_routing_keeps_to_the_deployments_a_secret_is_bound_to(
    gateway: RunningServer, fake: FakeUpstream
) -> None:
    # pair-a owns "other"; pair-b (weight 1 of 4) is never chosen for a request that names it
    for _ in range(6):
        r = post(gateway, {"model": "pair", "messages": MSG, "api_key_ref": "other"})
        assert r.status_code == 200
    assert set(fake.paths()) == {"/pair-a/v1/chat/completions"}
    assert all(rec.headers["Authorization"] == f"Bearer {OTHER_KEY}" for rec in fake.requests)


def test_fallbacks_skip_models_the_secret_is_not_bound_to(
    gateway: RunningServer, fake: FakeUpstream
) -> None:
    fake.script.extend(["500"])
    r = post(gateway, {"model": "lone-then-spare", "messages": MSG, "api_key_ref": "other"})
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_server_error"
    assert fake.paths() == ["/lone/v1/chat/completions"], "no fallback to spare (pair-b)"
    fake.script.extend(["500"])
    r = post(gateway, {"model": "lone-then-spare", "messages": MSG})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"].startswith(
        "pair-b:"), "without a key reference the fallback is taken"


def test_embeddings_keep_to_bound_deployments(gateway: RunningServer, fake: FakeUpstream) -> None:
    body = {"model": "text-embedding-3-small", "input": "hi"}
    r = post(gateway, {**body, "api_key_ref": "other"}, "/v1/embeddings")  # embedder's own key
    assert r.status_code == 200
    assert fake.requests[-1].headers["Authorization"] == f"Bearer {OTHER_KEY}"
    assert_refused(post(gateway, {**body, "api_key_ref": "telkom"}, "/v1/embeddings"), "telkom")
    assert len(fake.requests) == 1
