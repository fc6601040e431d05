"""Where speculation stops paying as more sequences decode together: greedy quoting requests at
1, 2, 4 and 8 clients, speculation on against off, rounds alternated.

    python bench/speculative_batch.py [--rounds 2] [--levels 1 2 4 8] [--tokens 96]

Each client sends a greedy request that repeats its context (a JSON object rewritten with one
field changed, or a code file edited, alternately: ``speculative.prompts``). Servers: ``on``
(``--kv-layout unified --speculative --speculative-max-batch 16``, so every level may
speculate) and ``off`` (``--kv-layout unified --no-speculative``). The figure is the aggregate
output tok/s of a level (completion tokens from ``usage`` over the level's wall time), the
median round, and on / off per level: where it falls below 1.0 is the break-even that
``--speculative-max-batch`` should sit under.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from common import Result, bench_parser, run_benchmark, stream_once, switchboard
from concurrency import MODEL
from speculative import prompts

SERVERS = {
    "on": ["--kv-layout", "unified", "--speculative", "--speculative-max-batch", "16"],
    "off": ["--kv-layout", "unified", "--no-speculative"],
}


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--tokens", type=int, default=96)
    run_benchmark(parser, measure)


def level(base: str, clients: int, tokens: int, round_no: int) -> float:
    """Aggregate output tok/s of ``clients`` greedy quoting requests sent together."""
    bodies = []
    for i in range(clients):
        texts = prompts(round_no * 10 + i)
        text = texts["json"] if i % 2 == 0 else texts["code"]
        bodies.append({"model": MODEL, "temperature": 0, "max_tokens": tokens,
                       "messages": [{"role": "user", "content": text}]})
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        timings = list(pool.map(lambda body: stream_once(base, body), bodies))
    return sum(t.tokens for t in timings) / (time.monotonic() - started)


def measure(args: argparse.Namespace) -> Result:
    rates: dict[str, dict[int, list[float]]] = {s: {n: [] for n in args.levels} for s in SERVERS}
    with contextlib.ExitStack() as stack:
        bases = {name: stack.enter_context(switchboard("--threads", "2", *flags))[0]
                 for name, flags in SERVERS.items()}
        for name in SERVERS:  # warm-up, reading the prompts' shared prefixes
            level(bases[name], 2, 8, 0)
        for round_no in range(1, args.rounds + 1):
            for clients in args.levels:
                order = list(SERVERS) if round_no % 2 else list(reversed(SERVERS))
                for name in order:
                    rates[name][clients].append(level(bases[name], clients, args.tokens,
                                                      round_no))
    print("| clients | on tok/s | off tok/s | on / off |")
    print("|---|---|---|---|")
    result: Result = {"tokens": args.tokens, "rounds": args.rounds, "levels": {}}
    for clients in args.levels:
        on, off = (statistics.median(rates[s][clients]) for s in SERVERS)
        print(f"| {clients} | {on:.1f} | {off:.1f} | {on / off:.2f}x |", flush=True)
        result["levels"][str(clients)] = {"on": round(on, 1), "off": round(off, 1),
                                          "ratio": round(on / off, 2)}
    return result


if __name__ == "__main__":
    main()
