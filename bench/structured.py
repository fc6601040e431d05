"""Cost of enforcing a JSON Schema: output tokens per second, constrained vs free, at 1 and 16
streams, in one server, rounds alternated.

    python bench/structured.py [--rounds 3] [--no-fast-forward] [--check-greedy 8]

Both kinds of request stream exactly 128 tokens (``max_tokens``): the constrained one must produce
a JSON array of 40 records (it never completes that early), whose keys, punctuation and the rest
of an enum value the grammar forces (fast-forward feeds them without sampling each; tokens are
counted from the usage of each stream, forced ones included); the free one is plain text with
end-of-sequence banned. ``--no-fast-forward`` serves with ``--no-grammar-fast-forward``.
``--check-greedy N`` then asks N greedy schema requests of a server with fast-forward and of one
without, both with flash attention (where greedy requests verify their forced tokens as drafts;
without it they decode token by token), and reports how many gave the same text.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import time

import httpx

from common import EOG_BAN, Result, bench_parser, run_benchmark, switchboard
from concurrency import MODEL

SCHEMA = {
    "type": "array", "minItems": 40, "maxItems": 40,
    "items": {
        "type": "object",
        "properties": {
            "id": {"type": "integer", "minimum": 0, "maximum": 9999},
            "name": {"type": "string", "minLength": 3, "maxLength": 12, "pattern": "^[a-z ]+$"},
            "status": {"enum": ["active", "suspended", "pending review"]},
            "verified": {"type": "boolean"},
        },
        "required": ["id", "name", "status", "verified"],
        "additionalProperties": False,
    },
}
GREEDY_PROMPTS = [f"List the members of club {c} as JSON records." for c in "ABCDEFGHIJKLMNOP"]


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-fast-forward", action="store_true",
                        help="serve with --no-grammar-fast-forward")
    parser.add_argument("--check-greedy", type=int, default=0, metavar="N",
                        help="compare N greedy schema outputs with and without fast-forward")
    run_benchmark(parser, measure)


def measure(args: argparse.Namespace) -> Result:
    medians = []
    print("| clients | kind | output tok/s | ITL p50 | ITL p99 |")
    print("|---|---|---|---|---|")
    flags = ["--no-grammar-fast-forward"] if args.no_fast_forward else []
    with switchboard("--threads", "2", *flags) as (base, _):
        asyncio.run(level(base, 1, 8))  # warm-up
        kinds = {"free": None, "guided_json": {"guided_json": SCHEMA, "logit_bias": {}}}
        for clients in (1, 16):
            runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
            for _ in range(args.rounds):  # alternate, so both kinds see the same machine
                for kind, extra in kinds.items():
                    runs[kind].append(asyncio.run(level(base, clients, 128, extra)))
            for kind, results in runs.items():
                r = sorted(results, key=lambda x: x["tok_s"])[len(results) // 2]
                print(f"| {clients} | {kind} | {r['tok_s']:.1f} | {r['itl_p50'] * 1000:.1f} ms | "
                      f"{r['itl_p99'] * 1000:.1f} ms |", flush=True)
                medians.append({"clients": clients, "kind": kind, **r})
            free, constrained = (statistics.median(r["tok_s"] for r in runs[k]) for k in kinds)
            print(f"{clients} stream(s): guided_json / free = {constrained / free:.2f}x",
                  flush=True)
    result: Result = {"rounds": args.rounds, "fast_forward": not args.no_fast_forward,
                      "median_rounds": medians}
    if args.check_greedy:
        result["greedy_same_text"] = check_greedy(args.check_greedy)
    return result


def check_greedy(n: int) -> dict[str, int]:
    """Ask the same greedy schema requests of a server with fast-forward and one without."""
    outputs = []
    for flags in ([], ["--no-grammar-fast-forward"]):
        with switchboard("--threads", "2", "--flash-attn", *flags) as (base, _):
            texts = []
            for prompt in GREEDY_PROMPTS[:n]:
                body = {"model": MODEL, "temperature": 0, "max_tokens": 96,
                        "messages": [{"role": "user", "content": prompt}],
                        "guided_json": SCHEMA}
                reply = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=300)
                texts.append(reply.raise_for_status().json()["choices"][0]["message"]["content"])
            outputs.append(texts)
    same = sum(a == b for a, b in zip(*outputs))
    print(f"greedy schema outputs with and without fast-forward: {same} of {n} the same text")
    return {"same": same, "of": n}


async def one(base: str, i: int, tokens: int, extra: dict | None) -> tuple[list[float], int]:
    """Stream one completion over a raw connection (as ``concurrency.one``); the output tokens
    are the stream's usage (a chunk may carry several forced tokens)."""
    request = {
        "model": MODEL, "max_tokens": tokens, "logit_bias": EOG_BAN, "stream": True,
        "stream_options": {"include_usage": True}, "temperature": 0.7, "seed": i,
        "messages": [{"role": "user",
                      "content": f"Tell story {i} ({time.time_ns()}) of a dragon."}],
    }
    body = json.dumps({**request, **(extra or {})}).encode()
    url = httpx.URL(base)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
    )
    await writer.drain()
    stamps: list[float] = []
    used = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        pass  # response headers
    async for line in reader:  # chunked framing lines and SSE lines alike
        if line.startswith(b"data: {"):
            event = json.loads(line[6:])
            choices = event.get("choices") or [{}]
            if choices[0].get("delta", {}).get("content"):
                stamps.append(time.monotonic())
            if event.get("usage"):
                used = event["usage"]["completion_tokens"]
    writer.close()
    return [b - a for a, b in itertools.pairwise(stamps)], used


async def level(base: str, clients: int, tokens: int, extra: dict | None = None
                ) -> dict[str, float]:
    t0 = time.monotonic()
    results = await asyncio.gather(*(one(base, i, tokens, extra) for i in range(clients)))
    wall = time.monotonic() - t0
    gaps = sorted(g for gs, _ in results for g in gs)
    return {
        "tok_s": sum(n for _, n in results) / wall,
        "itl_p50": statistics.median(gaps) if gaps else 0.0,
        "itl_p99": gaps[int(0.99 * (len(gaps) - 1))] if gaps else 0.0,
    }


if __name__ == "__main__":
    main()
