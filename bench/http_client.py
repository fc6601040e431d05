"""Why the upstream client is aiohttp: POSTs per second to a static nginx upstream, one pooled
client each, sequential and 32 concurrent, from one asyncio process (as the gateway does).

    python bench/http_client.py          # needs Debian's nginx-light
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx

from common import Result, bench_parser, free_port, run_benchmark
from gateway import body, nginx_conf

N = 4000


async def run(send: Callable[[], Awaitable[object]], concurrency: int) -> float:
    async def worker(count: int) -> None:
        for _ in range(count):
            await send()

    started = time.perf_counter()
    await asyncio.gather(*(worker(N // concurrency) for _ in range(concurrency)))
    return N / (time.perf_counter() - started)


def main() -> None:
    run_benchmark(bench_parser(__doc__), lambda args: asyncio.run(measure(args)))


async def measure(args: argparse.Namespace) -> Result:
    tmp = Path(tempfile.mkdtemp(prefix="sb-client-bench-"))
    port = free_port()
    nginx = subprocess.Popen(["nginx", "-c", str(nginx_conf(tmp, port))])
    await asyncio.sleep(0.5)
    url = f"http://127.0.0.1:{port}/plain/v1/chat/completions"
    data = body("bench", False).encode()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer x"}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
            async def aio() -> None:
                async with session.post(url, data=data, headers=headers) as resp:
                    await resp.read()

            a1, a32 = await run(aio, 1), await run(aio, 32)
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        async with httpx.AsyncClient(limits=limits) as client:
            async def hx() -> None:
                (await client.post(url, content=data, headers=headers)).read()

            h1, h32 = await run(hx, 1), await run(hx, 32)
    finally:
        nginx.terminate()
    print("| client | req/s sequential | req/s 32 concurrent |\n|---|---|---|")
    print(f"| aiohttp {aiohttp.__version__} | {a1:,.0f} | {a32:,.0f} |")
    print(f"| httpx {httpx.__version__} | {h1:,.0f} | {h32:,.0f} |")
    return {"requests": N,
            "aiohttp": {"version": aiohttp.__version__, "sequential_per_s": a1,
                        "concurrent_32_per_s": a32},
            "httpx": {"version": httpx.__version__, "sequential_per_s": h1,
                      "concurrent_32_per_s": h32}}


if __name__ == "__main__":
    main()
