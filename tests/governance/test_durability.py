"""The ledger and the key ring under abuse and crashes (issue 21): a row no database takes never
blocks the rows after it; ``--ledger-sync`` loses no row to kill -9; a server that had stored keys
never turns open when the last one is revoked."""

from __future__ import annotations

import concurrent.futures
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import start_server, stop_server
from tests.gateway.upstream import FakeUpstream
from tests.governance.conftest import MSG, Admin, governed_config, sdk, start_governed


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"deeper": value}
    return value


def test_a_deeply_nested_message_never_blocks_the_ledger(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    """With content logging, a message carrying a 300-deep extra field used to fail the batch
    forever (no row after it written, /admin/usage and /api/tracking/logs 500 until restart).
    The HTTP layer may refuse such a body outright; either way the ledger goes on (the ledger's
    own handling of such a row is in test_ledger_rows.py)."""
    srv = start_governed(tmp_path, fake, "--log-content")
    try:
        admin = Admin(srv)
        created = admin.create_key(name="deep")
        headers = {"authorization": f"Bearer {created['key']}"}
        poisoned = [{"role": "user", "content": "hi", "extra": _nested(300)}]
        r = httpx.post(srv.v1 + "/chat/completions", headers=headers, timeout=30,
                       json={"model": "free", "messages": poisoned})
        assert r.status_code in (200, 400), r.text
        time.sleep(1.0)  # the writer's interval passes: a poisoned batch would be tried
        sdk(srv, created["key"]).chat.completions.create(model="free", messages=MSG)
        rows = admin.usage(key_id=created["id"])["data"]
        assert rows[0]["status"] == 200  # newest first: the request after it
        logs = httpx.get(srv.base + "/api/tracking/logs", headers=headers, timeout=30)
        assert logs.status_code == 200, logs.text
        assert len(logs.json()) == len(rows)
    finally:
        stop_server(srv)


def test_ledger_sync_loses_no_row_to_kill_9(tmp_path: Path, fake: FakeUpstream) -> None:
    """With a 60 s write interval, the batched ledger would lose every row to kill -9; with
    SWITCHBOARD_LEDGER_SYNC each row is stored before its response ends."""
    srv = start_governed(tmp_path, fake, env={"SWITCHBOARD_LEDGER_FLUSH_S": "60",
                                              "SWITCHBOARD_LEDGER_SYNC": "true"})
    admin = Admin(srv)
    key = admin.create_key(name="sync")["key"]
    client = sdk(srv, key)

    def one(i: int) -> None:
        messages = [{"role": "user", "content": f"question {i}"}]
        if i % 2:
            list(client.chat.completions.create(model="free", messages=messages, stream=True))
        else:
            client.chat.completions.create(model="free", messages=messages)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(30)))
    srv.process.kill()
    srv.process.wait(timeout=30)
    with sqlite3.connect(tmp_path / "data" / "switchboard.db") as db:
        statuses = [s for (s,) in db.execute(
            "SELECT status FROM requests WHERE endpoint = 'chat.completions'")]
    assert statuses == [200] * 30


def test_revoking_the_last_stored_key_does_not_open_the_server(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    """keys create, serve, keys revoke, wait for the key cache: a request without a key used
    to get 200. Openness is decided by configuration: no key given and none ever stored."""
    config = tmp_path / "switchboard.yaml"
    config.write_text(yaml.safe_dump(governed_config(fake)))
    data = ["--data-dir", str(tmp_path / "data")]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "switchboard", "keys", *args, *data],
                              capture_output=True, text=True, timeout=60)

    made = cli("create", "--name", "only", "--json")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    srv = start_server(tmp_path, "--config", str(config),
                       env={"SWITCHBOARD_KEY_CACHE_TTL_S": "0.3"})
    body = {"model": "free", "messages": MSG}
    try:
        with_key = httpx.post(srv.v1 + "/chat/completions", json=body, timeout=30,
                              headers={"authorization": f"Bearer {created['key']}"})
        assert with_key.status_code == 200, with_key.text
        assert httpx.post(srv.v1 + "/chat/completions", json=body,
                          timeout=30).status_code == 401
        assert cli("revoke", created["id"]).returncode == 0
        time.sleep(1.0)  # well past the key cache
        anonymous = httpx.post(srv.v1 + "/chat/completions", json=body, timeout=30)
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.json()["error"]["code"] == "missing_api_key"
        revoked = httpx.post(srv.v1 + "/chat/completions", json=body, timeout=30,
                             headers={"authorization": f"Bearer {created['key']}"})
        assert revoked.status_code == 401
    finally:
        stop_server(srv)
