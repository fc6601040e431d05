"""Embedding requests from many clients at once: N concurrent clients each sending one short
sentence per request to a running server.

    python bench/embeddings_http.py --url http://127.0.0.1:8000 [--key KEY]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import aiohttp

from common import Result, bench_parser, run_benchmark


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=640)
    run_benchmark(parser, lambda args: asyncio.run(measure(args)))


async def measure(args: argparse.Namespace) -> Result:
    headers = {"authorization": f"Bearer {args.key}"} if args.key else {}
    latencies: list[float] = []
    counter = iter(range(args.requests))

    async def client(http: aiohttp.ClientSession) -> None:
        for i in counter:
            started = time.perf_counter()
            async with http.post(f"{args.url}/v1/embeddings", json={
                    "model": "all-minilm-l6-v2", "encoding_format": "base64",
                    "input": f"Sentence number {i} about embeddings on a CPU."}) as r:
                assert r.status == 200, await r.text()
                await r.read()
            latencies.append(time.perf_counter() - started)

    async with aiohttp.ClientSession(headers=headers) as http:
        await client_warmup(http, args.url)
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(args.clients)))
        elapsed = time.perf_counter() - started
    print(f"{args.clients} clients, {args.requests} requests: {args.requests / elapsed:.0f} "
          f"requests/s, p50 {statistics.median(latencies) * 1000:.1f} ms")
    return {"clients": args.clients, "requests": args.requests,
            "requests_per_s": args.requests / elapsed, "p50_s": statistics.median(latencies)}


async def client_warmup(http: aiohttp.ClientSession, url: str) -> None:
    async with http.post(f"{url}/v1/embeddings", json={"input": "warm up"}) as r:
        await r.read()


if __name__ == "__main__":
    main()
