"""TTFT of a repeated long system prompt, with and without the prefix cache.

    python bench/prefix_cache.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics

from common import Result, bench_parser, run_benchmark, stream_once, switchboard

SYSTEM = "You are the support assistant of a telecom company. " + " ".join(
    f"Rule {i}: answer politely, cite the tariff sheet, and never promise refunds."
    for i in range(80)
)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--runs", type=int, default=5)
    run_benchmark(parser, measure)


def measure(args: argparse.Namespace) -> Result:
    result: Result = {}
    for flag in ("--no-prefix-cache", "--prefix-cache"):
        with switchboard(flag) as (base, _):
            ttfts = []
            for i in range(args.runs + 1):
                body = {
                    "messages": [
                        {"role": "system", "content": SYSTEM},
                        {"role": "user", "content": f"Question number {i}: how do I top up?"},
                    ],
                    "max_tokens": 8,
                }
                ttfts.append(stream_once(base, body).ttft)
            repeat = statistics.median(ttfts[1:])
            print(f"{flag:18} first TTFT {ttfts[0] * 1000:6.0f} ms, "
                  f"repeated-prefix TTFT p50 {repeat * 1000:6.0f} ms")
            result[flag.removeprefix("--")] = {"first_ttft_s": ttfts[0],
                                               "repeated_prefix_ttft_p50_s": repeat}
    return result


if __name__ == "__main__":
    main()
