"""Shared fixtures: real Switchboard servers started as subprocesses on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.services import (
    ServiceMissing,
    pgvector_postgres_server,
    postgres_server,
    redis_server,
)

DATA = Path(__file__).parent / "data"
API_KEY = "sk-test-switchboard-0123456789"
TELKOM_ROOT = "/Telkom-LLM/0.0.4"


@pytest.fixture(scope="session")
def reference() -> dict:
    return json.loads((DATA / "smollm2_greedy.json").read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    base: str  # scheme://host:port[root_path]
    process: subprocess.Popen
    log_path: Path

    @property
    def v1(self) -> str:
        return self.base + "/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(
    tmp: Path, *args: str, env: dict[str, str] | None = None, scheme: str = "http",
    wait: bool = True,
) -> RunningServer:
    port = free_port()
    log_path = tmp / f"server-{port}.log"
    cmd = [sys.executable, "-m", "switchboard", "serve", "--port", str(port), *args]
    full_env = {"SWITCHBOARD_CACHE_DIR": str(tmp / "cache"), **os.environ,
                "SWITCHBOARD_DATA_DIR": str(tmp / "data"), **(env or {})}
    process = subprocess.Popen(
        cmd, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, env=full_env
    )
    root = ""
    if "--root-path" in args:
        root = args[args.index("--root-path") + 1]
    server = RunningServer(f"{scheme}://127.0.0.1:{port}{root}", process, log_path)
    if wait:
        wait_ready(server)
    return server


def wait_ready(server: RunningServer, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited:\n{server.log()}")
        try:
            r = httpx.get(server.base + "/health", verify=False, timeout=2)
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"server not ready:\n{server.log()}")


def stop_server(server: RunningServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


class HealthPoller:
    """Polls ``/health`` from a thread; ``worst`` is the slowest answer seen."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while True:  # at least one answer, however short the window
                started = time.perf_counter()
                assert client.get(self.base + "/health").status_code == 200
                self.latencies.append(time.perf_counter() - started)
                if self._stop.wait(0.01):
                    return

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def worst(self) -> float:
        return max(self.latencies)


def missing_service(exc: ServiceMissing) -> None:
    """Skip with the reason, except in CI, where ``.ci/run`` installs the servers."""
    if os.environ.get("CI"):
        pytest.fail(f"{exc} (CI must run these tests)")
    pytest.skip(str(exc))


def _service(start: Callable[[], AbstractContextManager[str]]) -> Iterator[str]:
    try:
        running = start()
        url = running.__enter__()
    except ServiceMissing as exc:
        missing_service(exc)
    yield url
    running.__exit__(None, None, None)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server for the session."""
    yield from _service(postgres_server)


@pytest.fixture(scope="session")
def pgvector_url() -> Iterator[str]:
    """A throwaway PostgreSQL server with the pgvector extension, for the session."""
    yield from _service(pgvector_postgres_server)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A throwaway Redis server for the session."""
    yield from _service(redis_server)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with one API key, at the root, on the shipped weights (to compare with
    llama.cpp)."""
    srv = start_server(
        tmp_path_factory.mktemp("srv"), "--api-key", API_KEY, "--weights", "original"
    )
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def telkom_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server mounted under Telkom's base path, keys from the environment."""
    srv = start_server(
        tmp_path_factory.mktemp("telkom"),
        "--root-path",
        TELKOM_ROOT,
        "--weights",
        "original",
        env={"SWITCHBOARD_API_KEYS": f"other-key,{API_KEY}"},
    )
    yield srv
    stop_server(srv)
