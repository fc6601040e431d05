"""Scaling out: two Switchboard replicas behind a round-robin load balancer, sharing one
PostgreSQL database and one Redis, enforce one exact limit, one budget and one key list, and
write one ledger."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from aiohttp import ClientSession, web

from tests.conftest import RunningServer, free_port, stop_server
from tests.gateway.upstream import FakeUpstream
from tests.governance.conftest import ADMIN_KEY, MSG, Admin, sdk, start_governed


class RoundRobinBalancer:
    """A minimal HTTP load balancer (like nginx's default upstream): each request goes to the
    next replica in turn, streamed through."""

    def __init__(self, replicas: list[str]) -> None:
        self.port = free_port()
        self._next = itertools.cycle(replicas)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        target = next(self._next) + request.path_qs
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with self._session.request(request.method, target, headers=headers,
                                         data=await request.read()) as upstream:
            response = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection")})
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app)

        async def start() -> None:
            self._session = ClientSession()
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> RoundRobinBalancer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            await self._session.close()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream, postgres_url: str,
             redis_url: str) -> Iterator[list[RunningServer]]:
    shared = ["--database-url", postgres_url, "--redis-url", redis_url]
    servers = [start_governed(tmp_path_factory.mktemp(f"replica{i}"), fake, *shared)
               for i in range(2)]
    yield servers
    for srv in servers:
        stop_server(srv)


@pytest.fixture(scope="module")
def balancer(replicas: list[RunningServer]) -> Iterator[RoundRobinBalancer]:
    with RoundRobinBalancer([r.base for r in replicas]) as lb:
        yield lb


def test_exact_limit_across_replicas(replicas: list[RunningServer],
                                     balancer: RoundRobinBalancer) -> None:
    admin = Admin(replicas[0])
    created = admin.create_key(name="shared-60rpm", rpm=60)
    url = balancer.url + "/v1/chat/completions"
    headers = {"authorization": f"Bearer {created['key']}"}

    def one(_: int) -> tuple[int, str]:
        r = httpx.post(url, json={"model": "free", "messages": MSG}, headers=headers, timeout=30)
        return r.status_code, r.headers.get("x-switchboard-deployment", "")

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(200)))
    statuses = [s for s, _ in results]
    assert statuses.count(200) == 60, statuses
    assert statuses.count(429) == 140
    # both replicas answered, and one ledger holds every request from both
    ledger: list[dict] = []
    for _ in range(50):
        ledger = Admin(replicas[1]).usage(key_id=created["id"], limit=1000)["data"]
        if len(ledger) == 200:
            break
        time.sleep(0.1)
    assert len(ledger) == 200
    assert sum(r["status"] == 200 for r in ledger) == 60


def test_budget_and_revocation_are_shared(replicas: list[RunningServer],
                                          balancer: RoundRobinBalancer) -> None:
    admin = Admin(replicas[0])
    created = admin.create_key(name="shared-budget", budget_usd=30)
    client = openai.OpenAI(base_url=balancer.url + "/v1", api_key=created["key"], max_retries=0)
    for _ in range(3):  # $11 each, alternating replicas
        client.chat.completions.create(model="paid", messages=MSG)
    for _ in range(2):  # refused on both replicas
        with pytest.raises(openai.RateLimitError) as err:
            client.chat.completions.create(model="paid", messages=MSG)
        assert err.value.body["code"] == "insufficient_quota"
    # a key made on one replica works on the other at once; revoked, it stops on both
    fresh = admin.create_key(name="shared-revoke")
    other = sdk(replicas[1], fresh["key"])
    assert other.chat.completions.create(model="free", messages=MSG).choices
    admin.http.delete(f"/admin/keys/{fresh['id']}")
    time.sleep(0.5)  # the replicas' key caches (0.3 s in these tests)
    for srv in replicas:
        with pytest.raises(openai.AuthenticationError):
            sdk(srv, fresh["key"]).chat.completions.create(model="free", messages=MSG)


def test_key_list_is_shared(replicas: list[RunningServer]) -> None:
    """Both replicas read the same key table: a key listed on one is listed on the other."""
    made = Admin(replicas[0]).create_key(name="listed")
    listed = httpx.get(replicas[1].base + "/admin/keys",
                       headers={"authorization": f"Bearer {ADMIN_KEY}"}).json()["data"]
    assert made["id"] in [k["id"] for k in listed]


def test_a_repeated_request_id_counts_in_redis(replicas: list[RunningServer],
                                               balancer: RoundRobinBalancer) -> None:
    key = Admin(replicas[0]).create_key(name="same-id-redis", rpm=3)["key"]
    headers = {"authorization": f"Bearer {key}", "x-request-id": "always-the-same"}
    statuses = [httpx.post(balancer.url + "/v1/chat/completions", headers=headers, timeout=30,
                           json={"model": "free", "messages": MSG}).status_code
                for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
