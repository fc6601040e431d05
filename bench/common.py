"""Helpers shared by the benchmarks: the command line every script shares (``--json``), start a
server, stream one request and time it, run a measurement in a fresh process.

The scripts import Switchboard as an installed package (``pip install -e .``) and these helpers
from their own folder, so they run from any working directory."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

EOG_BAN = {"0": -100, "2": -100, "4": -100}  # SmolLM2's end-of-generation tokens
Result = dict[str, Any]


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """The script's parser, with the ``--json`` flag every benchmark takes."""
    parser = argparse.ArgumentParser(
        description=(doc or "").strip().splitlines()[0] if doc else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--json", action="store_true",
        help="print the result as one JSON object on stdout (the tables go to stderr)",
    )
    return parser


def run_benchmark(parser: argparse.ArgumentParser,
                  measure: Callable[[argparse.Namespace], Result]) -> None:
    """Parse the command line and run ``measure``, which prints its tables and returns its
    figures. With ``--json`` everything printed goes to stderr (child processes' output too)
    and stdout gets one object: the benchmark, its command, the machine and the result."""
    args = parser.parse_args()
    if not args.json:
        measure(args)
        return
    sys.stdout.flush()
    stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        result = measure(args)
    finally:
        sys.stdout.flush()
        os.dup2(stdout, 1)
        os.close(stdout)
    report = {
        "benchmark": Path(sys.argv[0]).stem,
        "command": " ".join(["python", f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]]),
        "machine": machine(),
        "result": result,
    }
    print(json.dumps(report, default=str))


def machine() -> dict[str, Any]:
    """What the figures depend on: the CPU, its cores, the OS and the versions that compute."""
    from importlib.metadata import PackageNotFoundError, version

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("switchboard", "llama-cpp-python", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "system": platform.platform(),
            "python": platform.python_version(), **versions}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listener_pid(port: int) -> int:
    """The process listening on 127.0.0.1:``port`` (Linux: from /proc)."""
    hex_port = f"{port:04X}"
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(":" + hex_port) and fields[3] == "0A":  # 0A: LISTEN
            inodes.add(f"socket:[{fields[9]}]")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes
                   for fd in os.listdir(f"/proc/{pid}/fd")):
                return int(pid)
        except OSError:
            continue
    raise LookupError(f"nothing listens on port {port}")


def main_thread_cpu_s(pid: int) -> float:
    """CPU seconds the process's main thread has used (its event loop, for the servers)."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def launched(args: list[str], ready_path: str, port: int) -> Iterator[tuple[str, float]]:
    """Run a server command; yield its base URL and the seconds until ``ready_path`` gave 200."""
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if httpx.get(base + ready_path, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                sys.exit(f"server exited: {' '.join(args)}")
            time.sleep(0.01)
        yield base, time.monotonic() - started
    finally:
        proc.terminate()
        proc.wait()


def switchboard(*args: str) -> AbstractContextManager[tuple[str, float]]:
    """Start ``switchboard serve ARGS`` (a context manager like ``launched``)."""
    port = free_port()
    cmd = [sys.executable, "-m", "switchboard", "serve", "--port", str(port), *args]
    return launched(cmd, "/health", port)


@dataclass
class Timing:
    ttft: float
    total: float
    tokens: int


def stream_once(base: str, body: dict) -> Timing:
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    t0 = time.monotonic()
    first = None
    tokens = 0
    with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=300) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                first = first or time.monotonic()
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    end = time.monotonic()
    return Timing(ttft=(first or end) - t0, total=end - t0, tokens=tokens)


def isolated(fn: Callable[..., T], *args: object) -> T:
    """Run one measurement in a fresh process: once one llama.cpp context has computed on one
    thread, another computing on a second thread decodes markedly slower, as slow as with
    ``OMP_WAIT_POLICY=passive``. Likely cause: each thread gets its own OpenMP team, and with more
    OpenMP threads than cores libgomp stops spin-waiting. (The server runs every forward pass on
    its one engine thread.)"""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)
