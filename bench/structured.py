"""Cost of enforcing a JSON Schema: time per output token, constrained vs free, at 1 and 16
streams.

    python bench/structured.py [--rounds 3]

Both kinds of request stream exactly 128 tokens (``max_tokens``): the constrained one must produce
a JSON array of 100 short strings (it never completes that early), the free one is plain text
with end-of-sequence banned.
"""

from __future__ import annotations

import argparse
import asyncio

from common import Result, bench_parser, run_benchmark, switchboard
from concurrency import level

SCHEMA = {
    "type": "array", "minItems": 100, "maxItems": 100,
    "items": {"type": "string", "minLength": 3, "maxLength": 12, "pattern": "^[a-z ]+$"},
}


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    run_benchmark(parser, measure)


def measure(args: argparse.Namespace) -> Result:
    medians = []
    print("| clients | kind | output tok/s | ITL p50 | ITL p99 |")
    print("|---|---|---|---|---|")
    with switchboard("--threads", "2") as (base, _):
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
    return {"rounds": args.rounds, "median_rounds": medians}


if __name__ == "__main__":
    main()
