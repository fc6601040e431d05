"""``switchboard serve --draft-model``: a greedy request is verified against the draft model's
guesses (usage reports them as OpenAI's prediction tokens), and a draft file that is not a
model keeps the server from becoming ready, with the reason in ``/health``."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from switchboard.engine.embedded import embedded_model_path
from tests.conftest import start_server, stop_server


def test_greedy_requests_verify_the_draft_models_guesses(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--flash-attn", "--draft-model", str(embedded_model_path()))
    try:
        body = {"model": "smollm2-135m-instruct", "temperature": 0, "max_tokens": 40,
                "messages": [{"role": "user", "content": "Name three rivers in Europe."}]}
        reply = httpx.post(f"{server.v1}/chat/completions", json=body, timeout=120)
        reply.raise_for_status()
        details = reply.json()["usage"]["completion_tokens_details"]
        assert details["accepted_prediction_tokens"] > 0
        assert reply.json()["choices"][0]["message"]["content"]
    finally:
        stop_server(server)


def test_a_draft_file_that_is_not_a_model_is_reported(tmp_path: Path) -> None:
    bogus = tmp_path / "draft.gguf"
    bogus.write_bytes(b"not a gguf")
    server = start_server(tmp_path, "--flash-attn", "--draft-model", str(bogus), wait=False)
    try:
        for _ in range(300):
            try:
                health = httpx.get(f"{server.base}/health", timeout=2)
            except httpx.HTTPError:
                health = None
            if health is not None and "draft.gguf" in health.text:
                break
            if server.process.poll() is not None:
                assert "draft.gguf" in server.log()
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"the bad draft model was not reported:\n{server.log()}")
    finally:
        stop_server(server)
