"""Embedding requests from many clients at once: N concurrent clients each sending one short
sentence per request to a running server. With ``--large N``, one more client first sends a
request of N inputs of 256 tokens, and the short requests are timed while it is encoded.

    python bench/embeddings_http.py --url http://127.0.0.1:8000 [--key KEY] [--large 1024]
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
    parser.add_argument("--large", type=int, default=0,
                        help="inputs of 256 tokens in one request sent before the short ones")
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

    async def large(http: aiohttp.ClientSession) -> float:
        started = time.perf_counter()
        texts = [f"chunk {i}: " + "the river runs past the old mill and on to the sea " * 22
                 for i in range(args.large)]  # 256 tokens each once cut
        async with http.post(f"{args.url}/v1/embeddings", json={
                "model": "all-minilm-l6-v2", "encoding_format": "base64", "input": texts}) as r:
            assert r.status == 200, await r.text()
            await r.read()
        return time.perf_counter() - started

    async with aiohttp.ClientSession(headers=headers) as http:
        await client_warmup(http, args.url)
        large_task = asyncio.create_task(large(http)) if args.large else None
        if large_task:
            await asyncio.sleep(0.5)  # the large request is being encoded
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(args.clients)))
        elapsed = time.perf_counter() - started
        large_s = await large_task if large_task else None
    p50, worst = statistics.median(latencies), max(latencies)
    print(f"{args.clients} clients, {args.requests} requests: {args.requests / elapsed:.0f} "
          f"requests/s, p50 {p50 * 1000:.1f} ms, slowest {worst * 1000:.0f} ms")
    if large_s is not None:
        print(f"meanwhile one request of {args.large} inputs of 256 tokens: {large_s:.1f} s")
    return {"clients": args.clients, "requests": args.requests,
            "requests_per_s": args.requests / elapsed, "p50_s": p50, "slowest_s": worst,
            "large_inputs": args.large, "large_s": large_s}


async def client_warmup(http: aiohttp.ClientSession, url: str) -> None:
    async with http.post(f"{url}/v1/embeddings", json={"input": "warm up"}) as r:
        await r.read()


if __name__ == "__main__":
    main()
