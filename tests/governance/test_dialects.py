"""Every dialect is governed like chat (issue 22): a key without the model is refused in that
dialect's own error shape, and every answered request, whole or streamed, leaves exactly one
ledger row naming its endpoint. The model is an upstream that only speaks chat completions, so
each dialect also reaches it by translation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer
from tests.governance.conftest import Admin

PROMPT = "Hello"
ANSWER = "answer from the fake upstream"  # what tests.gateway.upstream says


@dataclass(frozen=True)
class Dialect:
    endpoint: str  # as the ledger names it
    path: str
    body: Callable[[str, bool], dict[str, Any]]  # (model, stream) -> request body
    refused: Callable[[dict[str, Any]], bool]  # is this the dialect's own 403 body?
    streams: bool = True
    answered: Callable[[dict[str, Any]], bool] = lambda body: True


def _openai_refusal(body: dict[str, Any]) -> bool:
    error = body.get("error") or {}
    return error.get("code") == "model_not_allowed" and "model" in error.get("message", "")


def _anthropic_refusal(body: dict[str, Any]) -> bool:
    return body.get("type") == "error" and body["error"]["type"] == "permission_error"


DIALECTS = [
    Dialect("chat.completions", "/v1/chat/completions",
            lambda model, stream: {"model": model, "stream": stream,
                                   "messages": [{"role": "user", "content": PROMPT}]},
            _openai_refusal,
            answered=lambda b: b["choices"][0]["message"]["content"].endswith(ANSWER)),
    Dialect("completions", "/v1/completions",
            lambda model, stream: {"model": model, "stream": stream, "prompt": PROMPT,
                                   "max_tokens": 8},
            _openai_refusal,
            answered=lambda b: b["choices"][0]["text"].endswith(ANSWER)),
    Dialect("responses", "/v1/responses",
            lambda model, stream: {"model": model, "stream": stream, "input": PROMPT,
                                   "max_output_tokens": 16},
            _openai_refusal,
            answered=lambda b: b["output"][0]["content"][0]["text"].endswith(ANSWER)),
    Dialect("messages", "/v1/messages",
            lambda model, stream: {"model": model, "stream": stream, "max_tokens": 16,
                                   "messages": [{"role": "user", "content": PROMPT}]},
            _anthropic_refusal,
            answered=lambda b: b["type"] == "message" and b["content"][0]["text"]),
    Dialect("llmstudio", "/api/engine/chat/openai",
            lambda model, stream: {"model": model, "is_stream": stream, "chat_input": PROMPT},
            _openai_refusal,
            answered=lambda b: b["chat_output"].endswith(ANSWER)),
    Dialect("embeddings", "/v1/embeddings",
            lambda model, stream: {"model": model, "input": PROMPT},
            _openai_refusal, streams=False,
            answered=lambda b: len(b["data"]) == 1),
]


def _stream_text(response: httpx.Response) -> str:
    return "".join(response.iter_text())


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.endpoint)
def test_a_key_without_the_model_is_refused_in_the_dialects_shape(
        governed: RunningServer, admin: Admin, dialect: Dialect) -> None:
    key = admin.create_key(name=f"only-free-{dialect.endpoint}", models=["free"])
    headers = {"authorization": f"Bearer {key['key']}"}
    r = httpx.post(governed.base + dialect.path, json=dialect.body("paid", False),
                   headers=headers, timeout=30)
    assert r.status_code == 403, r.text
    assert dialect.refused(r.json()), r.text
    rows = admin.usage(key_id=key["id"])["data"]
    assert [(row["status"], row["endpoint"]) for row in rows] == [(403, dialect.endpoint)]


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.endpoint)
def test_every_answered_request_has_exactly_one_ledger_row(
        governed: RunningServer, admin: Admin, dialect: Dialect) -> None:
    key = admin.create_key(name=f"rows-{dialect.endpoint}", models=["free"])
    headers = {"authorization": f"Bearer {key['key']}"}
    with httpx.Client(base_url=governed.base, headers=headers, timeout=30) as client:
        for _ in range(2):
            r = client.post(dialect.path, json=dialect.body("free", False))
            assert r.status_code == 200, r.text
            assert dialect.answered(r.json()), r.text
            assert r.headers["x-switchboard-deployment"] == "up"
        if dialect.streams:
            with client.stream("POST", dialect.path, json=dialect.body("free", True)) as r:
                assert r.status_code == 200
                assert "answer" in _stream_text(r)
    expected = 3 if dialect.streams else 2
    rows = admin.usage(key_id=key["id"])["data"]
    assert len(rows) == expected, rows
    assert {row["endpoint"] for row in rows} == {dialect.endpoint}
    assert all(row["status"] == 200 and row["deployment"] == "up" for row in rows)
    assert [row["stream"] for row in rows].count(True) == expected - 2
    assert len({row["request_id"] for row in rows}) == expected
