"""Streams from an upstream that sends only SSE keep-alive comments: the stall timeout counts
time since the last event, and a client that leaves frees the deployment and closes the upstream
connection, whether it left before the first event or mid-stream."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from tests.conftest import API_KEY, RunningServer
from tests.gateway.conftest import MSG
from tests.gateway.upstream import FakeUpstream


def in_flight(gateway: RunningServer, deployment: str) -> float:
    text = httpx.get(gateway.base + "/metrics").text
    prefix = "switchboard:deployment_in_flight{"
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(prefix) and f'deployment="{deployment}"' in line)


def eventually(check: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def open_raw_stream(gateway: RunningServer, model: str) -> socket.socket:
    """A streamed request on a bare socket, so the test decides when the client goes away."""
    url = urlsplit(gateway.v1 + "/chat/completions")
    body = json.dumps({"model": model, "messages": MSG, "stream": True}).encode()
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    sock.sendall(f"POST {url.path} HTTP/1.1\r\nHost: {url.hostname}\r\n"
                 f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return sock


def test_keep_alives_alone_do_not_hold_the_client_before_the_first_event(
    gateway: RunningServer, fake: FakeUpstream
) -> None:
    fake.script.extend(["keepalive"])
    started = time.monotonic()
    r = httpx.post(gateway.v1 + "/chat/completions", timeout=15,
                   headers={"Authorization": f"Bearer {API_KEY}"},
                   json={"model": "watchdog", "messages": MSG, "stream": True})
    assert time.monotonic() - started < 4, "watchdog's stall timeout is 1 s"
    assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_stall"
    assert eventually(lambda: fake.abandoned == 1, 2), "the upstream connection was closed"
    assert in_flight(gateway, "watchdog") == 0


def test_keep_alives_mid_stream_end_it_with_an_in_band_timeout(
    gateway: RunningServer, fake: FakeUpstream
) -> None:
    fake.script.extend(["keepalive_after_first"])
    started = time.monotonic()
    with httpx.stream("POST", gateway.v1 + "/chat/completions", timeout=15,
                      headers={"Authorization": f"Bearer {API_KEY}"},
                      json={"model": "watchdog", "messages": MSG, "stream": True}) as r:
        assert r.status_code == 200
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert time.monotonic() - started < 4
    assert events[-1] == "[DONE]"
    assert json.loads(events[0])["choices"][0]["delta"]["role"] == "assistant"
    assert json.loads(events[-2])["error"]["code"] == "upstream_stall"
    assert eventually(lambda: fake.abandoned == 1, 2)
    assert in_flight(gateway, "watchdog") == 0


def test_a_client_leaving_before_the_first_event_frees_the_deployment(
    gateway: RunningServer, fake: FakeUpstream
) -> None:
    fake.script.extend(["keepalive"])  # "patient" would wait 30 s for an event
    sock = open_raw_stream(gateway, "patient")
    assert eventually(lambda: in_flight(gateway, "patient") == 1, 5)
    time.sleep(0.3)
    sock.close()
    assert eventually(lambda: in_flight(gateway, "patient") == 0, 3), "in-flight after leaving"
    assert eventually(lambda: fake.abandoned == 1, 3), "the upstream connection stays open"


def test_a_client_leaving_mid_stream_frees_the_deployment(
    gateway: RunningServer, fake: FakeUpstream
) -> None:
    fake.script.extend(["keepalive_after_first"])
    sock = open_raw_stream(gateway, "patient")
    received = b""
    while b"data: " not in received:
        received += sock.recv(4096)
    assert b" 200 " in received.split(b"\r\n", 1)[0]
    assert in_flight(gateway, "patient") == 1
    sock.close()
    assert eventually(lambda: in_flight(gateway, "patient") == 0, 3), "in-flight after leaving"
    assert eventually(lambda: fake.abandoned == 1, 3), "the upstream connection stays open"
