"""Bounded input: huge or odd requests get a quick 4xx in OpenAI's format while the server keeps
answering everyone else (``/health`` polled from a thread during each request)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from switchboard.http.body_limits import MAX_JSON_DEPTH, header_list, parse_json
from switchboard.http.errors import APIError
from switchboard.protocol.limits import MAX_CHOICES, MAX_MESSAGES
from tests.conftest import API_KEY, HealthPoller, RunningServer, start_server, stop_server

AUTH = {"Authorization": f"Bearer {API_KEY}"}
JSON = {**AUTH, "content-type": "application/json"}
HI = [{"role": "user", "content": "hi"}]
TIMEOUT = 60


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server whose bodies may hold at most 4 MiB, and its uploads 2 MiB."""
    srv = start_server(tmp_path_factory.mktemp("limits"), "--api-key", API_KEY,
                       "--weights", "original",
                       env={"SWITCHBOARD_MAX_REQUEST_BYTES": str(4 * 1024 * 1024),
                            "SWITCHBOARD_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024)})
    yield srv
    stop_server(srv)


def post_timed(url: str, body: bytes, base: str) -> tuple[httpx.Response, float, float]:
    """The response, its time, and how much slower than when idle the slowest ``/health``
    answer was while it ran (on a busy test machine every answer takes longer)."""
    with HealthPoller(base) as idle:
        time.sleep(0.5)
    with HealthPoller(base) as health:
        started = time.perf_counter()
        r = httpx.post(url, content=body, headers=JSON, timeout=TIMEOUT)
        took = time.perf_counter() - started
    return r, took, health.worst - idle.worst


def messages_body(count: int, content: str = "hello there, tiny message", **extra: Any) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": content}] * count,
                       **extra}).encode()


def test_100k_messages_are_refused_fast_while_health_answers(server: RunningServer) -> None:
    body = messages_body(100_000, "a tiny chat message.")
    assert len(body) > 5_000_000
    r, took, worst = post_timed(server.v1 + "/chat/completions", body, server.base)
    error = r.json()["error"]
    assert (r.status_code, error["code"], error["param"]) == (400, "too_many_messages", "messages")
    assert f"at most {MAX_MESSAGES} messages" in error["message"]
    assert took < 1.0, took
    assert worst < 0.1, worst


def test_20k_messages_and_one_10mb_message(server: RunningServer) -> None:
    r, took, worst = post_timed(server.v1 + "/chat/completions", messages_body(20_000),
                                server.base)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "too_many_messages")
    assert took < 1.0 and worst < 0.1, (took, worst)
    # One 10 MB message: too long for the context, known without tokenizing all of it.
    r, took, worst = post_timed(server.v1 + "/chat/completions",
                                messages_body(1, "word " * 2_000_000), server.base)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "context_length_exceeded")
    assert took < 1.0 and worst < 0.1, (took, worst)


def test_many_messages_within_the_limit_are_prepared_off_the_event_loop(
        server: RunningServer) -> None:
    """Each message holds special-token text: llama.cpp's own search for special tokens takes
    time in their number times the prompt's length; the prompt is cut first."""
    body = messages_body(MAX_MESSAGES, "<|im_end|>x" * 20, max_tokens=1)
    r, took, worst = post_timed(server.v1 + "/chat/completions", body, server.base)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "context_length_exceeded")
    assert took < 2.0 and worst < 0.1, (took, worst)


def test_a_body_over_the_size_limit_is_a_413(small_server: RunningServer) -> None:
    body = messages_body(1, "x" * (5 * 1024 * 1024))
    r, _, worst = post_timed(small_server.v1 + "/chat/completions", body, small_server.base)
    assert (r.status_code, r.json()["error"]["code"]) == (413, "request_too_large")
    assert worst < 0.1, worst

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it arrives
        for start in range(0, len(body), 65536):
            yield body[start:start + 65536]

    r = httpx.post(small_server.v1 + "/chat/completions", content=chunks(), headers=JSON,
                   timeout=TIMEOUT)
    assert (r.status_code, r.json()["error"]["code"]) == (413, "request_too_large")


def test_a_json_body_sent_as_another_type_is_still_a_413(small_server: RunningServer) -> None:
    body = messages_body(1, "x" * (5 * 1024 * 1024))
    r = httpx.post(small_server.v1 + "/chat/completions", content=body,
                   headers={**AUTH, "content-type": "text/plain"}, timeout=TIMEOUT)
    assert (r.status_code, r.json()["error"]["code"]) == (413, "request_too_large")


def test_an_upload_over_its_limit_is_a_413_before_any_file_is_read(
        small_server: RunningServer) -> None:
    """Uploads have their own bound (``max_upload_bytes``, for all files together), checked
    as the body arrives, so a client cannot make the server hold gigabytes."""
    url = small_server.base + "/v1/buckets/limits/documents"
    files = [("files", (f"part{i}.txt", b"words and more words. " * 50_000)) for i in range(3)]
    with HealthPoller(small_server.base) as health:
        r = httpx.post(url, files=files, headers=AUTH, timeout=TIMEOUT)  # 3.3 MB in all
    assert (r.status_code, r.json()["error"]["code"]) == (413, "request_too_large"), r.text
    assert health.worst < 1.0, health.worst
    request = httpx.Request("POST", url, files=files, headers=AUTH)
    body = request.read()

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it arrives
        for start in range(0, len(body), 65536):
            yield body[start:start + 65536]

    headers = {**AUTH, "content-type": request.headers["content-type"]}
    r = httpx.post(url, content=chunks(), headers=headers, timeout=TIMEOUT)
    assert (r.status_code, r.json()["error"]["code"]) == (413, "request_too_large"), r.text
    r = httpx.post(url, files=files[:1], headers=AUTH, timeout=TIMEOUT)  # 1.1 MB: fine
    assert r.status_code == 202, r.text


@pytest.mark.parametrize("field", ["metadata", "x_extra", "guided_json", "tools_parameters"])
def test_integers_past_64_bits_and_deep_nesting_are_400s(server: RunningServer,
                                                         field: str) -> None:
    url = server.v1 + "/chat/completions"

    def post(value: Any) -> httpx.Response:
        if field == "tools_parameters":
            tool = {"type": "function", "function": {"name": "f", "parameters": value}}
            return httpx.post(url, json={"messages": HI, "tools": [tool]}, headers=AUTH,
                              timeout=TIMEOUT)
        return httpx.post(url, json={"messages": HI, field: value}, headers=AUTH, timeout=TIMEOUT)

    r = post({"a": [1, 2**70]})
    error = r.json()["error"]
    assert (r.status_code, error["code"]) == (400, "integer_out_of_range"), r.text
    assert error["param"].endswith("a[1]") and str(2**70) in error["message"]
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    r = post({"a": deep})
    error = r.json()["error"]
    assert (r.status_code, error["code"]) == (400, "nesting_too_deep"), r.text
    assert error["param"] == ("tools" if field == "tools_parameters" else field)


def test_llmstudio_parameters_and_admin_metadata_under_the_same_policy(
        server: RunningServer) -> None:
    r = httpx.post(server.base + "/api/engine/chat/local", headers=AUTH, timeout=TIMEOUT, json={
        "chat_input": "hi", "model": "smollm2-135m-instruct",
        "parameters": {"max_tokens": 2, "x": {"y": -(2**64)}}})
    assert (r.status_code, r.json()["error"]["param"]) == (400, "parameters.x.y")
    r = httpx.post(server.base + "/api/engine/chat/local", headers=AUTH, timeout=TIMEOUT, json={
        "chat_input": HI * (MAX_MESSAGES + 1), "model": "smollm2-135m-instruct"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "too_many_messages")


def test_a_body_nested_past_the_parsers_recursion_is_a_400(server: RunningServer) -> None:
    body = b'{"messages": [], "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = httpx.post(server.v1 + "/chat/completions", content=body, headers=JSON, timeout=TIMEOUT)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "nesting_too_deep")


def test_64_bit_integers_and_the_allowed_depth_pass(server: RunningServer) -> None:
    nested: Any = "leaf"
    for _ in range(MAX_JSON_DEPTH - 2):  # the body and x_extra's own object are two levels
        nested = [nested]
    r = httpx.post(server.v1 + "/chat/completions", headers=AUTH, timeout=TIMEOUT, json={
        "messages": HI, "max_tokens": 1, "seed": 2**64 - 1, "x_extra": {"deep": nested},
        "x_min": -(2**63)})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path", ["/api/tracking/logs?skip={}", "/api/tracking/logs?limit={}",
                                  "/admin/usage?offset={}"])
def test_query_integers_past_64_bits_are_400s(server: RunningServer, path: str) -> None:
    name = path.split("?")[1].split("=")[0]
    for value in (str(2**63), "9" * 5000, str(-(2**70))):
        r = httpx.get(server.base + path.format(value), headers=AUTH, timeout=TIMEOUT)
        assert r.status_code == 400, r.text
        assert (r.json()["error"]["code"], r.json()["error"]["param"]) == (
            "integer_out_of_range", name)


def test_query_parameters_a_route_does_not_read_are_left_alone(server: RunningServer) -> None:
    """The policy guards what reaches the database; an unread parameter reaches nothing, and a
    400 for it would be a status the route's schema never promised (Schemathesis found it)."""
    r = httpx.get(server.base + f"/api/tracking/logs?other={2**70}&limit=1", headers=AUTH,
                  timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    schema = httpx.get(server.base + "/openapi.json", timeout=TIMEOUT).json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            reads_query = any(p["in"] == "query" for p in operation.get("parameters", []))
            if reads_query or "requestBody" in operation:
                assert "400" in operation["responses"], (method, path)


def test_guided_choice_and_schema_sizes_are_bounded(server: RunningServer) -> None:
    url = server.v1 + "/chat/completions"
    choices = [f"option {i}" for i in range(2000)]
    for body in ({"guided_choice": choices},
                 {"structured_outputs": {"choice": choices}}):
        r = httpx.post(url, json={"messages": HI, **body}, headers=AUTH, timeout=TIMEOUT)
        error = r.json()["error"]
        assert (r.status_code, error["code"]) == (400, "too_many_choices"), r.text
        assert error["param"] in ("guided_choice", "structured_outputs.choice")
        assert f"at most {MAX_CHOICES}" in error["message"]
    schema = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(8000)}}
    r = httpx.post(url, json={"messages": HI, "guided_json": schema}, headers=AUTH, timeout=TIMEOUT)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "schema_too_large")
    r = httpx.post(url, headers=AUTH, timeout=TIMEOUT, json={
        "messages": HI, "max_tokens": 3, "guided_choice": choices[:MAX_CHOICES]})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] in choices


@pytest.mark.parametrize("name", ["中文", "a\r\nx", "a,b c", "ü"])
@pytest.mark.parametrize("stream", [False, True])
def test_unknown_parameter_names_any_text_in_the_ignored_header(
        server: RunningServer, name: str, stream: bool) -> None:
    """Non-Latin-1 or CR/LF names broke the header after generating (a 500 or a dropped
    connection, and for streams a leaked in-flight slot)."""
    body = {"messages": HI, "max_tokens": 2, "stream": stream, name: 1}
    with httpx.stream("POST", server.v1 + "/chat/completions", json=body, headers=AUTH,
                      timeout=TIMEOUT) as r:
        r.read()
        assert r.status_code == 200
        value = r.headers["x-switchboard-ignored-params"]
    assert value == header_list([name]) and value.isascii() and "\r" not in value
    from urllib.parse import unquote
    assert unquote(value) == name
    deployment = httpx.get(server.base + "/health").json()["deployments"]
    assert deployment["smollm2-135m-instruct"]["in_flight"] == 0  # the stream's slot is back


def test_header_list_keeps_token_names_and_encodes_the_rest() -> None:
    assert header_list(["top_a", "x-y.z"]) == "top_a,x-y.z"
    assert header_list(["中", "a\r\nb", "a,b", "50%"]) == "%E4%B8%AD,a%0D%0Ab,a%2Cb,50%25"


def test_policy_refusals_name_the_place() -> None:
    with pytest.raises(APIError) as info:
        parse_json(b'{"a": {"b": [0, 1, 18446744073709551616]}}')
    assert (info.value.status, info.value.param, info.value.code) == (
        400, "a.b[2]", "integer_out_of_range")
    assert parse_json(b'{"a": [18446744073709551615, -9223372036854775808]}') == {
        "a": [2**64 - 1, -(2**63)]}
    with pytest.raises(APIError) as info:
        parse_json(b'{"a": -9223372036854775809}')
    assert info.value.param == "a"
    with pytest.raises(APIError) as info:
        parse_json(b'{"a": ' + b"1" * 5000 + b"}")  # past Python's int() digits limit
    assert info.value.code == "integer_out_of_range"


def test_every_api_route_is_under_the_policy() -> None:
    import importlib
    import pkgutil

    from fastapi.routing import APIRoute

    from switchboard.http import routes
    from switchboard.http.body_limits import CheckedRoute

    for module in pkgutil.iter_modules(routes.__path__):
        router = importlib.import_module(f"{routes.__name__}.{module.name}").router
        api_routes = [r for r in router.routes if isinstance(r, APIRoute)]
        assert api_routes and all(isinstance(r, CheckedRoute) for r in api_routes), module.name
