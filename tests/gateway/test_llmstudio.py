"""LLMstudio's engine API, checked with LLMstudio's own published client (``llmstudio-proxy``),
installed in a virtualenv of its own because it pins old openai/fastapi versions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningServer, start_server, stop_server

CLIENT = Path(__file__).parent / "llmstudio_client.py"
VENV = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / \
    "switchboard-tests" / "llmstudio-proxy-1.0.6"


@pytest.fixture(scope="module")
def llmstudio_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=120)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "llmstudio-proxy==1.0.6"],
                       check=True, timeout=600)
    return python


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """LLMstudio's client sends no API key: a server without keys (loopback only)."""
    srv = start_server(tmp_path_factory.mktemp("llmstudio"))
    yield srv
    stop_server(srv)


def test_llmstudio_proxy_client_works_unchanged(
    llmstudio_python: Path, open_server: RunningServer
) -> None:
    result = subprocess.run(
        [str(llmstudio_python), str(CLIENT), open_server.base, "local", "smollm2-135m-instruct"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["type"] == "ChatCompletion" and out["provider"] == "local"
    assert out["chat_output"] == out["content"] and out["content"]
    assert out["metrics"]["output_tokens"] == 8 and out["metrics"]["latency_s"] > 0
    assert out["stream_types"] == ["ChatCompletionChunk"]
    assert out["stream_text"] == out["stream_final_output"] == out["content"]  # temperature 0
    assert out["stream_metrics"]["output_tokens"] == 8


def test_engine_listing_endpoints(open_server: RunningServer) -> None:
    assert httpx.get(open_server.base + "/api/engine/providers").json() == ["local"]
    models = httpx.get(open_server.base + "/api/engine/models").json()
    assert models == {"local": {"name": "local", "models": ["smollm2-135m-instruct"]}}
    r = httpx.post(open_server.base + "/api/engine/chat/bogus",
                   json={"chat_input": "hi", "model": "smollm2-135m-instruct"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "provider"
    r = httpx.post(open_server.base + "/api/engine/chat/local",
                   json={"chat_input": "hi", "model": "smollm2-135m-instruct",
                         "parameters": {"temperature": 9}})
    assert r.status_code == 422


def test_engine_chat_with_the_retrieval_tool(open_server: RunningServer) -> None:
    upload = httpx.post(open_server.base + "/v1/buckets/facts/documents", timeout=30,
                        files=[("files", ("owl.txt", b"The owl in the tower is named Hedwig."))])
    task = upload.json()["data"]["task_id"]
    for _ in range(100):
        status = httpx.get(open_server.base + f"/v2/ai/embeddings/{task}").json()["data"]
        if status["status"] == "success":
            break
        time.sleep(0.1)
    tools = [{"type": "retrieval", "retrieval": {"bucket_ids": ["facts"]}}]
    body = {"chat_input": "What is the owl called?", "model": "smollm2-135m-instruct",
            "parameters": {"max_tokens": 8, "tools": tools}}
    answer = httpx.post(open_server.base + "/api/engine/chat/local", json=body, timeout=60).json()
    assert answer["retrieval"]["chunks"][0]["filename"] == "owl.txt"
    with httpx.stream("POST", open_server.base + "/api/engine/chat/local", timeout=60,
                      json={**body, "is_stream": True}) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert lines[-1]["retrieval"]["chunks"][0]["filename"] == "owl.txt"
    missing = httpx.post(open_server.base + "/api/engine/chat/local", timeout=30, json={
        **body, "parameters": {"tools": [{"type": "retrieval",
                                          "retrieval": {"bucket_ids": ["nope"]}}]}})
    assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]
