"""HTTP behaviour beyond the SDK: health while loading, disconnects, in-band stream errors, TLS."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from switchboard.engine import StepOutput
from switchboard.gateway.providers.base import StreamEvent
from switchboard.http.app import create_app
from switchboard.http.errors import to_api_error
from switchboard.http.sse import sse_stream
from switchboard.protocol import ChatCompletionRequest
from switchboard.serving import ChatRun, ModelCatalog
from switchboard.settings import Settings
from tests.conftest import API_KEY, RunningServer, start_server, stop_server

BODY = {"messages": [{"role": "user", "content": "Tell me a long story."}]}
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def running(server: RunningServer) -> int:
    stats = httpx.get(server.base + "/health").json()["models"]["smollm2-135m-instruct"]
    return stats["running"] + stats["waiting"]


def wait_idle(server: RunningServer, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running(server) == 0:
            return True
        time.sleep(0.02)
    return False


def test_health_needs_no_key_and_docs_exist(server: RunningServer) -> None:
    r = httpx.get(server.base + "/health")
    assert r.status_code == 200 and r.json()["status"] == "healthy"
    assert httpx.get(server.base + "/docs").status_code == 200
    spec = httpx.get(server.base + "/openapi.json").json()
    assert "/v1/chat/completions" in spec["paths"]
    assert httpx.get(server.base + "/v1/models").status_code == 401
    assert httpx.get(server.base + "/v1/models", headers={"x-api-key": API_KEY}).status_code == 200


def test_health_is_503_while_loading(tmp_path: Path) -> None:
    async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        settings = Settings(data_dir=tmp_path)
        catalog = ModelCatalog(settings)
        app = create_app(settings, catalog)
        await app.state.governance.open()  # the part of the lifespan this test needs
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            loading = await client.get("/health")
            chat = await client.post("/v1/chat/completions", json=BODY)
            await catalog.load()
            ready = await client.get("/health")
        await app.state.governance.close()
        catalog.close()
        return loading, chat, ready

    loading, chat, ready = asyncio.run(scenario())
    assert loading.status_code == 503 and loading.json()["error"]["code"] == "model_loading"
    assert chat.status_code == 503 and "Retry-After" in chat.headers
    assert ready.status_code == 200


def test_stream_disconnect_frees_the_sequence(server: RunningServer) -> None:
    body = {**BODY, "stream": True, "max_tokens": 1500, "ignore_eos": True}
    with httpx.stream("POST", server.v1 + "/chat/completions", json=body, headers=AUTH) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        for _ in range(6):
            next(lines)
        assert running(server) == 1
    assert wait_idle(server)


def test_non_stream_disconnect_frees_the_sequence(server: RunningServer) -> None:
    body = {**BODY, "max_tokens": 1500, "ignore_eos": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.v1 + "/chat/completions", json=body, headers=AUTH, timeout=1.0)
    assert wait_idle(server)


def test_error_after_stream_started_is_sent_in_band() -> None:
    """An engine failure mid-stream becomes ``data: {"error": ...}`` then ``[DONE]``."""

    async def scenario() -> tuple[list[bytes], bool]:
        queue: asyncio.Queue = asyncio.Queue()
        run = ChatRun(
            model=None, request=ChatCompletionRequest(messages=BODY["messages"]),  # type: ignore[arg-type]
            prompt_tokens=3, queue=queue,
        )
        run.handles.append(None)  # type: ignore[arg-type]  # one choice in flight
        run.cancel = lambda: None  # type: ignore[method-assign]
        closed = []

        async def close() -> None:
            closed.append(True)

        async def chunks() -> AsyncIterator[StreamEvent]:  # what ChatService.stream yields
            async for _, out in run.outputs():
                yield StreamEvent({"content": out.text})

        await queue.put((0, StepOutput(text="Once")))
        await queue.put((0, StepOutput(finish_reason="error", error="simulated failure")))
        frames = [
            f async for f in sse_stream(
                chunks(), on_error=lambda e: to_api_error(e).body(),
                on_close=close,
            )
        ]
        return frames, bool(closed)

    frames, closed = asyncio.run(scenario())
    assert closed
    assert json.loads(frames[0][6:])["content"] == "Once"
    assert frames[-1] == b"data: [DONE]\n\n"
    error = json.loads(frames[-2][6:])["error"]
    assert error["message"] == "simulated failure" and error["type"] == "server_error"


def test_invalid_json_and_bad_messages_are_4xx(server: RunningServer) -> None:
    url = server.v1 + "/chat/completions"
    r = httpx.post(url, content=b"{not json", headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422 and "error" in r.json() and "detail" in r.json()
    r = httpx.post(url, json={"messages": [{"role": "wizard", "content": "x"}]}, headers=AUTH)
    assert r.status_code == 422 and r.json()["error"]["param"].startswith("messages[0]")
    r = httpx.post(
        url,
        json={"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]},
        headers=AUTH,
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages[0].content[0]"
    r = httpx.post(url, json={**BODY, "logit_bias": {"999999": 5}}, headers=AUTH)
    assert r.status_code == 400 and r.json()["error"]["param"] == "logit_bias"
    r = httpx.post(url, json={**BODY, "max_tokens": 100000}, headers=AUTH)
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    lone_surrogate = b'{"max_tokens": 2, "messages": [{"role": "user", "content": "a\\udfff"}]}'
    r = httpx.post(url, content=lone_surrogate,
                   headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 200


def test_tls(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    srv = start_server(
        tmp_path, "--ssl-certfile", str(cert), "--ssl-keyfile", str(key), scheme="https"
    )
    try:
        r = httpx.post(
            srv.v1 + "/chat/completions", json={**BODY, "max_tokens": 2}, verify=False
        )
        assert r.status_code == 200 and r.json()["object"] == "chat.completion"
        with pytest.raises(httpx.HTTPError):
            httpx.get(srv.base.replace("https", "http") + "/health", timeout=2)
    finally:
        stop_server(srv)


def test_any_gguf_with_model_flag_and_open_server_warning(tmp_path: Path) -> None:
    from switchboard.engine.embedded import embedded_model_path

    copy = tmp_path / "my-model.Q4_1.gguf"
    copy.symlink_to(embedded_model_path())
    srv = start_server(tmp_path, "--model", str(copy))
    try:
        models = httpx.get(srv.v1 + "/models").json()["data"]
        assert [m["id"] for m in models] == ["my-model.Q4_1", "all-minilm-l6-v2"]
        r = httpx.post(
            srv.v1 + "/chat/completions",
            json={**BODY, "model": "my-model.Q4_1", "max_tokens": 2},
        )
        assert r.status_code == 200 and r.json()["model"] == "my-model.Q4_1"
        assert "no API key configured" in srv.log() and "127.0.0.1" in srv.log()
        # Default weights (Q8_0, flash attention): the prefix cache serves a repeated prompt.
        system = {"role": "system", "content": "You answer in French. " * 30}
        usages = [
            httpx.post(srv.v1 + "/chat/completions", json={
                "messages": [system, {"role": "user", "content": question}], "max_tokens": 2,
            }).json()["usage"]
            for question in ("Hi", "Hello")
        ]
        assert usages[0]["prompt_tokens_details"]["cached_tokens"] < 10  # template tokens only
        assert usages[1]["prompt_tokens_details"]["cached_tokens"] > 100
    finally:
        stop_server(srv)


def test_prometheus_metrics_count_requests(server: RunningServer) -> None:
    def scrape() -> dict[str, float]:
        values = {}
        for line in httpx.get(server.base + "/metrics").text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    label = '{model_name="smollm2-135m-instruct"}'
    before = scrape()
    r = httpx.post(
        server.v1 + "/chat/completions", json={**BODY, "max_tokens": 5, "ignore_eos": True},
        headers=AUTH,
    )
    usage = r.json()["usage"]
    after = scrape()
    gen = "switchboard:generation_tokens_total" + label
    prompt = "switchboard:prompt_tokens_total" + label
    assert after[gen] - before.get(gen, 0) == 5
    assert after[prompt] - before.get(prompt, 0) == usage["prompt_tokens"]
    ttft = "switchboard:time_to_first_token_seconds_count" + label
    assert after[ttft] - before.get(ttft, 0) == 1
    assert after["switchboard:num_requests_running" + label] == 0
    assert "switchboard:kv_cache_usage_perc" + label in after


def test_kv_layout_sets_each_requests_context(server: RunningServer, tmp_path: Path) -> None:
    """Per-sequence streams (default) give each request 2,048 tokens; one unified pool of
    8,192 cells lets one request use them all."""
    too_long = {**BODY, "max_tokens": 100000}
    r = httpx.post(server.v1 + "/chat/completions", json=too_long, headers=AUTH)
    assert "maximum context length is 2048 tokens" in r.json()["error"]["message"]
    unified = start_server(tmp_path, "--kv-layout", "unified", "--max-sequences", "2",
                           "--max-num-batched-tokens", "64")
    try:
        assert ("2 sequences, unified KV cache (8192 tokens per request), flash attention on, "
                "prefix cache on, 64 tokens per step") in unified.log()
        r = httpx.post(unified.v1 + "/chat/completions", json=too_long)
        assert "maximum context length is 8192 tokens" in r.json()["error"]["message"]
        with pytest.raises(httpx.ReadTimeout):  # accepted: still generating after a second
            httpx.post(unified.v1 + "/chat/completions",
                       json={**BODY, "max_tokens": 3000, "ignore_eos": True}, timeout=1.0)
    finally:
        stop_server(unified)


def test_an_unreachable_database_is_a_503_with_retry_after() -> None:
    import asyncio

    from switchboard.persistence import Database
    from switchboard.persistence.usage import UsageFilter, UsageRepository

    async def read() -> BaseException:
        db = Database("postgresql+asyncpg://u:p@127.0.0.1:1/db")  # nothing listens on port 1
        try:
            await UsageRepository(db).records(UsageFilter())
        except Exception as exc:  # noqa: BLE001 - the error under test
            return exc
        finally:
            await db.close()
        raise AssertionError("the read should have failed")

    error = to_api_error(asyncio.run(read()))
    assert (error.status, error.code, error.headers) == (
        503, "database_unavailable", {"Retry-After": "1"})
    assert to_api_error(ValueError("a bug")).status == 500  # other failures stay 500s


def test_odd_json_from_clients_gets_its_4xx(server: RunningServer) -> None:
    """JSON may carry ``\\ud800`` escapes that UTF-8 cannot encode back: they arrive as ``?``,
    so errors echoing them render and tokenizers take them (each was a 500)."""
    def post(raw: str) -> httpx.Response:
        return httpx.post(server.v1 + "/chat/completions", content=raw.encode(),
                          headers={**AUTH, "content-type": "application/json"})

    messages = '"messages": [{"role": "user", "content": "hi"}]'
    r = post('{"model": "m\\ud800", ' + messages + '}')
    assert r.status_code == 404 and "'m?'" in r.json()["error"]["message"]
    r = post('{"max_tokens": "\\ud800", ' + messages + '}')
    assert r.status_code == 422 and r.json()["error"]["param"] == "max_tokens"
    r = post('{"temperature": NaN, ' + messages + '}')  # Python's JSON reads NaN; 422, not 500
    assert r.status_code == 422 and r.json()["error"]["param"] == "temperature"
    r = httpx.post(server.v1 + "/embeddings", content=b'{"input": "a\\ud800b"}',
                   headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 384


def test_database_errors_are_answered_by_their_own_handler() -> None:
    """Answered by class, not by the catch-all: Starlette re-raises what only the catch-all
    answers, and the server then drops the client's keep-alive connection."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from sqlalchemy.exc import OperationalError

    from switchboard.http.errors import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/down")
    async def down() -> None:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("refused"))

    @app.get("/bug")
    async def bug() -> None:
        raise ValueError("a bug")

    client = TestClient(app)  # raises whatever the app re-raises
    r = client.get("/down")
    assert r.status_code == 503 and r.json()["error"]["code"] == "database_unavailable"
    with pytest.raises(ValueError, match="a bug"):  # the catch-all: answered 500, then re-raised
        client.get("/bug")
