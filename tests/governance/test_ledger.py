"""The usage ledger: every request recorded (refusals too), read back through ``/admin/usage``
(filters, grouping, CSV) and LLMstudio's tracker endpoints; sessions; contents only when asked;
nothing lost on SIGTERM; keys made with the CLI."""

from __future__ import annotations

import concurrent.futures
import csv
import io
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import RunningServer, stop_server
from tests.gateway.upstream import FakeUpstream
from tests.governance.conftest import (
    COST_PER_PAID_ANSWER,
    MSG,
    TOKENS_PER_ANSWER,
    Admin,
    sdk,
    start_governed,
)


def test_usage_filters_grouping_and_csv(governed: RunningServer, admin: Admin) -> None:
    created = admin.create_key(name="ledger")
    client = sdk(governed, created["key"])
    for model in ("paid", "paid", "free"):
        client.chat.completions.create(model=model, messages=MSG)
    list(client.chat.completions.create(model="free", messages=MSG, stream=True))
    records = admin.usage(key_id=created["id"])["data"]
    assert len(records) == 4
    assert {r["model"] for r in records} == {"paid", "free"}
    assert [r["stream"] for r in records].count(True) == 1
    assert all(r["input_tokens"] + r["output_tokens"] == TOKENS_PER_ANSWER for r in records)
    assert all(r["status"] == 200 and r["deployment"] == "up" for r in records)
    by_model = admin.usage(key_id=created["id"], group_by="model")["data"]
    assert by_model == [
        {**by_model[0], "model": "free", "requests": 2, "cost_usd": 0.0},
        {**by_model[1], "model": "paid", "requests": 2, "cost_usd": 2 * COST_PER_PAID_ANSWER},
    ]
    day = admin.usage(key_id=created["id"], group_by="key,day")["data"]
    assert len(day) == 1 and day[0]["requests"] == 4 and day[0]["key"] == created["id"]
    only_paid = admin.usage(key_id=created["id"], model="paid")["data"]
    assert len(only_paid) == 2
    future = admin.usage(key_id=created["id"], start="2099-01-01T00:00:00Z")["data"]
    assert future == []
    text = admin.http.get("/admin/usage", params={"key_id": created["id"], "format": "csv"})
    assert text.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text.text)))
    assert len(rows) == 4 and rows[0]["key_id"] == created["id"]
    bad = admin.http.get("/admin/usage", params={"group_by": "colour"})
    assert bad.status_code == 400


def test_sessions_and_tracking_logs(governed: RunningServer, admin: Admin) -> None:
    mine = sdk(governed, admin.create_key(name="session-owner")["key"])
    theirs = admin.create_key(name="someone-else")["key"]
    mine.chat.completions.create(model="free", messages=MSG, extra_body={"session_id": "s-42"})
    mine.chat.completions.create(model="paid", messages=MSG,
                                 extra_headers={"x-session-id": "s-42"})
    mine.chat.completions.create(model="free", messages=MSG)  # no session
    http = httpx.Client(base_url=governed.base,
                        headers={"authorization": f"Bearer {mine.api_key}"})
    session = http.get("/api/tracking/session/s-42").json()
    assert [e["extras"]["model"] for e in session] == ["free", "paid"]  # oldest first
    assert all(e["session_id"] == "s-42" and e["chat_history"] == [] for e in session)
    logs = http.get("/api/tracking/logs/s-42").json()
    assert len(logs) == 2 and logs[0]["model"] == "paid"  # newest first
    assert logs[0]["metrics"]["cost_usd"] == COST_PER_PAID_ANSWER
    assert logs[0]["chat_input"] == "" and logs[0]["context"] == []  # content is not stored
    assert len(http.get("/api/tracking/logs").json()) == 3
    # another key sees none of it; the admin sees it all
    other = httpx.get(governed.base + "/api/tracking/logs/s-42",
                      headers={"authorization": f"Bearer {theirs}"})
    assert other.status_code == 200 and other.json() == []
    assert len(admin.http.get("/api/tracking/logs/s-42").json()) == 2


def test_refusals_are_recorded(governed: RunningServer, admin: Admin) -> None:
    created = admin.create_key(name="refused", models=["free"])
    with pytest.raises(openai.PermissionDeniedError):
        sdk(governed, created["key"]).chat.completions.create(model="paid", messages=MSG)
    [row] = admin.usage(key_id=created["id"])["data"]
    assert row["status"] == 403 and "may not use" in row["error"]
    assert row["input_tokens"] == 0 and row["cost_usd"] == 0


def _database(server: RunningServer) -> Path:
    return server.log_path.parent / "data" / "switchboard.db"


def test_sigterm_loses_nothing_and_content_logging(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    """With a 60 s write interval nothing is written before SIGTERM: every row comes from the
    shutdown flush."""
    srv = start_governed(tmp_path, fake, "--log-content",
                         env={"SWITCHBOARD_LEDGER_FLUSH_S": "60"})
    admin = Admin(srv)
    key = admin.create_key(name="durable")["key"]
    admin.http.close()
    client = sdk(srv, key)

    def one(i: int) -> None:
        messages = [{"role": "user", "content": f"question {i}"}]
        if i % 2:
            list(client.chat.completions.create(model="free", messages=messages, stream=True,
                                                extra_body={"session_id": "durable"}))
        else:
            client.chat.completions.create(model="free", messages=messages,
                                           extra_body={"session_id": "durable"})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(40)))
    srv.process.send_signal(signal.SIGTERM)
    srv.process.wait(timeout=30)  # uvicorn re-raises SIGTERM once it has shut down cleanly
    assert "Application shutdown complete" in srv.log()
    with sqlite3.connect(_database(srv)) as db:
        rows = db.execute("SELECT status, session_id, content FROM requests").fetchall()
    assert len(rows) == 40
    assert {r[0] for r in rows} == {200} and {r[1] for r in rows} == {"durable"}
    contents = [json.loads(r[2]) for r in rows]
    asked = sorted(c["messages"][0]["content"] for c in contents)
    assert asked == sorted(f"question {i}" for i in range(40))
    assert all("fake" in json.dumps(c["output"]) for c in contents)
    stop_server(srv)


def test_cli_keys(tmp_path: Path, fake: FakeUpstream) -> None:
    srv = start_governed(tmp_path, fake)
    data = ["--data-dir", str(tmp_path / "data")]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "switchboard", "keys", *args, *data],
                              capture_output=True, text=True, timeout=60)

    try:
        made = cli("create", "--name", "from-cli", "--models", "free", "--rpm", "2",
                   "--budget-usd", "10", "--budget-period", "30d", "--expires", "2099-01-01",
                   "--json")
        assert made.returncode == 0, made.stderr
        created = json.loads(made.stdout)
        assert created["models"] == ["free"] and created["rpm"] == 2
        client = sdk(srv, created["key"])
        raw = client.chat.completions.with_raw_response.create(model="free", messages=MSG)
        assert raw.headers["x-ratelimit-limit-requests"] == "2"
        listing = cli("list")
        assert listing.returncode == 0 and "from-cli" in listing.stdout
        assert created["key"] not in listing.stdout
        assert cli("update", created["prefix"], "--rpm", "5").returncode == 0
        time.sleep(0.5)  # the server's key cache (0.3 s here)
        raw = client.chat.completions.with_raw_response.create(model="free", messages=MSG)
        assert raw.headers["x-ratelimit-limit-requests"] == "5"
        assert cli("revoke", created["id"]).returncode == 0
        time.sleep(0.5)
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="free", messages=MSG)
        missing = cli("revoke", "key_nope")
        assert missing.returncode == 1 and "no API key" in missing.stderr
        invalid = cli("create", "--name", "x", "--budget-period", "sometimes")
        assert invalid.returncode == 2 and "duration" in invalid.stderr
    finally:
        stop_server(srv)
