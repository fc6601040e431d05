"""A server with the embedded chat model, an admin key and two user keys, for retrieval tests:
once on SQLite (vectors searched with NumPy), once on PostgreSQL with pgvector (searched there)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import RunningServer, start_server, stop_server
from tests.services import create_database

ADMIN_KEY = "sb-retrieval-admin-0123456789"


@dataclass
class Users:
    server: RunningServer
    alice: httpx.Client
    bob: httpx.Client
    admin: httpx.Client


@pytest.fixture(scope="package", params=["sqlite", "pgvector"])
def users(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Users]:
    database = []
    if request.param == "pgvector":
        database = ["--database-url", create_database(request.getfixturevalue("pgvector_url"))]
    srv = start_server(tmp_path_factory.mktemp("retrieval"), "--admin-key", ADMIN_KEY, *database)
    if request.param == "pgvector":
        assert "pgvector set up" in srv.log(), srv.log()
    admin = httpx.Client(base_url=srv.base, timeout=60,
                         headers={"authorization": f"Bearer {ADMIN_KEY}"})
    clients = []
    for name in ("alice", "bob"):
        key = admin.post("/admin/keys", json={"name": name}).json()["key"]
        clients.append(httpx.Client(base_url=srv.base, timeout=60,
                                    headers={"authorization": f"Bearer {key}"}))
    yield Users(srv, clients[0], clients[1], admin)
    for client in (*clients, admin):
        client.close()
    stop_server(srv)


def upload(client: httpx.Client, bucket: str, files: dict[str, bytes],
           **form: int) -> httpx.Response:
    return client.post(f"/v1/buckets/{bucket}/documents",
                       files=[("files", (name, data)) for name, data in files.items()],
                       data={k: str(v) for k, v in form.items()})


def wait_task(client: httpx.Client, task_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = client.get(f"/v2/ai/embeddings/{task_id}").json()["data"]
        if task["status"] in ("success", "failure"):
            return task
        time.sleep(0.1)
    raise TimeoutError(task_id)


def make_pdf(text: str) -> bytes:
    """A one-page PDF showing ``text`` in Helvetica (objects and cross-reference by hand)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)
