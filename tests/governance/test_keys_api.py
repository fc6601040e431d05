"""API keys through the admin API and the ``openai`` SDK: creation (secret shown once, stored
hashed), listing, changes, revocation, expiry, model allow-lists, and the 401/403 paths."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import RunningServer
from tests.governance.conftest import ADMIN_KEY, MSG, STATIC_KEY, Admin, sdk


def test_create_list_update_revoke(governed: RunningServer, admin: Admin) -> None:
    created = admin.create_key(name="alice", rpm=100, models=["free"], budget_usd=5,
                               budget_period="30d", expires_at="30d")
    secret = created["key"]
    assert secret.startswith("sk-sb-") and len(secret) == 46
    assert created["prefix"] == secret[:14] and created["models"] == ["free"]
    listed = admin.http.get("/admin/keys").json()["data"]
    mine = next(k for k in listed if k["id"] == created["id"])
    assert "key" not in mine and "secret_hash" not in mine and secret not in str(listed)
    # read by prefix, change a limit
    assert admin.http.get(f"/admin/keys/{created['prefix']}").json()["id"] == created["id"]
    changed = admin.http.patch(f"/admin/keys/{created['id']}", json={"rpm": 7, "tpm": None})
    assert changed.status_code == 200 and changed.json()["rpm"] == 7
    # the key works, then stops working once revoked
    client = sdk(governed, secret)
    assert client.chat.completions.create(model="free", messages=MSG).choices[0].message.content
    revoked = admin.http.delete(f"/admin/keys/{created['id']}").json()
    assert revoked["revoked_at"] is not None
    with pytest.raises(openai.AuthenticationError) as err:
        client.chat.completions.create(model="free", messages=MSG)
    assert err.value.status_code == 401 and err.value.body["code"] == "invalid_api_key"
    ids = [k["id"] for k in admin.http.get("/admin/keys").json()["data"]]
    assert created["id"] not in ids
    everything = admin.http.get("/admin/keys", params={"include_revoked": True}).json()["data"]
    assert created["id"] in [k["id"] for k in everything]


def test_only_hashes_are_stored(governed: RunningServer, admin: Admin) -> None:
    secret = admin.create_key(name="hashed")["key"]
    database = Path(governed.log_path).parent / "data" / "switchboard.db"
    with sqlite3.connect(database) as db:
        dump = "\n".join(db.iterdump())
    assert secret not in dump and secret[14:] not in dump
    assert ADMIN_KEY not in dump and STATIC_KEY not in dump


def test_admin_api_needs_the_admin_key(governed: RunningServer, admin: Admin) -> None:
    user = admin.create_key(name="user")["key"]
    for key, status in ((user, 403), (STATIC_KEY, 403), ("wrong", 401)):
        r = httpx.get(governed.base + "/admin/keys", headers={"authorization": f"Bearer {key}"})
        assert r.status_code == status, r.text
        assert r.json()["error"]["type"] in ("permission_error", "authentication_error")
    assert httpx.get(governed.base + "/admin/keys").status_code == 401
    # bad specs are 4xx, not 500
    assert admin.http.post("/admin/keys", json={"name": "x", "rpm": 0}).status_code == 422
    assert admin.http.post("/admin/keys", json={"name": "x", "budget_period": "soon"}
                           ).status_code == 422
    assert admin.http.post("/admin/keys", json={"rpm": 5}).status_code == 422
    assert admin.http.post("/admin/keys", json={"name": "x", "tpm": 10**12}).status_code == 422
    missing = admin.http.patch("/admin/keys/key_nope", json={"rpm": 3})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "key_not_found"
    for bad in ({"name": "tab\tname"}, {"name": "x", "budget_period": "0d"},
                {"name": "x", "expires_at": "2020-01-01"}):
        assert admin.http.post("/admin/keys", json=bad).status_code == 422, bad
    for raw in (b'{"name": "x", "budget_usd": 1e400}', b'{"name": "x", "rpm": NaN}'):
        r = admin.http.post("/admin/keys", content=raw,
                            headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["error"]["message"].endswith("finite number")
    created = admin.create_key(name="unchanged", rpm=9)
    same = admin.http.patch(f"/admin/keys/{created['id']}", json={})  # nothing to change
    assert same.status_code == 200 and (same.json()["name"], same.json()["rpm"]) == (
        "unchanged", 9)
    past = admin.http.patch(f"/admin/keys/{created['id']}", json={"expires_at": "2020-01-01"})
    assert past.status_code == 422 and "revoke" in past.json()["error"]["message"]


def test_out_of_range_key_fields_are_4xx(governed: RunningServer, admin: Admin) -> None:
    """Durations past any date, integers past 64 bits: 422 in the API's error format (they were
    500s: an overflowing date, a JSON integer no database stores)."""
    created = admin.create_key(name="ranges")
    for spec in ({"expires_at": "99999999d"}, {"budget_period": "99999999d"},
                 {"budget_period": "1e20d"}, {"expires_at": "1e20d"},
                 {"budget_period": "9" * 400 + "d"}, {"expires_at": "9999-12-31T23:59:59-14:00"},
                 {"metadata": {"n": 2**64}}, {"metadata": {"n": [-(2**70)]}},
                 {"rpm": 2**64}, {"max_parallel": 2**100}, {"budget_usd": 2**1100}):
        r = admin.http.post("/admin/keys", json={"name": "x", **spec})
        assert r.status_code in (400, 422), (spec, r.text)  # 400: refused as the body is read
        assert set(r.json()["error"]) >= {"message", "type", "param", "code"}
        patched = admin.http.patch(f"/admin/keys/{created['id']}", json=spec)
        assert patched.status_code in (400, 422), (spec, patched.text)
    fine = admin.create_key(name="in range", metadata={"n": 2**63 - 1}, budget_period="36500d")
    assert fine["metadata"] == {"n": 2**63 - 1}


def test_sdk_auth_errors(governed: RunningServer) -> None:
    with pytest.raises(openai.AuthenticationError) as err:
        sdk(governed, "sk-sb-notAKeyAtAll000000000000000000000000000").chat.completions.create(
            model="free", messages=MSG)
    assert err.value.body["code"] == "invalid_api_key"
    r = httpx.post(governed.v1 + "/chat/completions", json={"model": "free", "messages": MSG})
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    # keys given on the command line and the admin key keep working
    for key in (STATIC_KEY, ADMIN_KEY):
        assert sdk(governed, key).chat.completions.create(model="free", messages=MSG).choices


def test_model_allow_list(governed: RunningServer, admin: Admin) -> None:
    key = admin.create_key(name="free-only", models=["free", "paid-alias"])["key"]
    client = sdk(governed, key)
    assert client.chat.completions.create(model="free", messages=MSG).choices
    assert client.chat.completions.create(model="paid", messages=MSG).choices  # via its alias
    with pytest.raises(openai.PermissionDeniedError) as err:
        client.chat.completions.create(model="limited", messages=MSG)
    assert err.value.status_code == 403
    assert err.value.body["code"] == "model_not_allowed" and err.value.body["param"] == "model"
    assert sorted(m.id for m in client.models.list()) == ["free", "paid"]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=MSG)


def test_expired_key(governed: RunningServer, admin: Admin) -> None:
    created = admin.create_key(name="short", expires_at="1s")
    client = sdk(governed, created["key"])
    time.sleep(1.2)
    with pytest.raises(openai.AuthenticationError) as err:
        client.chat.completions.create(model="free", messages=MSG)
    assert err.value.body["code"] == "expired_api_key"
