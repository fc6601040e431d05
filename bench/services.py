"""Throwaway PostgreSQL and Redis servers from Debian's packages (``apt-get install postgresql
redis-server``), on loopback ports with their own data folders, for the benchmarks that compare
storage back ends. The test suite has its own launchers (``tests/services.py``); the benchmarks
keep theirs here so that they import nothing from ``tests/``."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common import free_port


def _wait_port(port: int, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{what} did not open port {port}")


def _postgres_bin() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not versions:
        raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
    return Path(versions[-1]).parent


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yields an asyncpg URL. As root, the server runs as the ``postgres`` system user."""
    bindir = _postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="sb-bench-pg-"))
    data = root / "data"
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        os.chmod(root, 0o755)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "switchboard",
                    "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
    server = subprocess.Popen(
        [*prefix, str(bindir / "postgres"), "-D", str(data), "-p", str(port),
         "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={root}",
         "-c", "fsync=off", "-c", "max_connections=200"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    try:
        _wait_port(port, "postgres")
        deadline = time.monotonic() + 30
        while subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise TimeoutError("postgres not ready")
            time.sleep(0.1)
        subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                        "-U", "switchboard", "switchboard"], check=True, capture_output=True)
        yield f"postgresql+asyncpg://switchboard@127.0.0.1:{port}/switchboard"
    finally:
        _stop(server)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("Redis is not installed (apt-get install redis-server)")
    root = Path(tempfile.mkdtemp(prefix="sb-bench-redis-"))
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    try:
        _wait_port(port, "redis")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(server)
        shutil.rmtree(root, ignore_errors=True)


def _stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
