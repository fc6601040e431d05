"""Time-to-ready and single-stream speed of a freshly started Switchboard on the embedded model.

    python bench/single_stream.py [--runs 5] [--max-tokens 128] [-- extra serve flags]

Starts ``switchboard serve`` itself, measures process start → ``/health`` 200, then streams
``--runs`` completions of exactly ``--max-tokens`` tokens (end-of-sequence banned with the
standard ``logit_bias``) and prints TTFT and output tokens/s.
"""

from __future__ import annotations

import argparse
import statistics

from common import EOG_BAN, Result, bench_parser, run_benchmark, stream_once, switchboard


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("serve_args", nargs="*")
    run_benchmark(parser, measure)


def measure(args: argparse.Namespace) -> Result:
    with switchboard(*args.serve_args) as (base, ready):
        print(f"time to ready (process start -> /health 200): {ready:.2f} s")
        body = {
            "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
            "max_tokens": args.max_tokens, "logit_bias": EOG_BAN,
        }
        runs = [stream_once(base, body) for _ in range(args.runs)]
        assert all(r.tokens == args.max_tokens for r in runs)
        rate = statistics.median(r.tokens / r.total for r in runs)
        ttft = statistics.median(r.ttft for r in runs)
        print(
            f"single stream, {args.max_tokens} tokens x {args.runs}: {rate:.1f} output tok/s "
            f"(median, TTFT included), TTFT p50 {ttft * 1000:.0f} ms"
        )
    return {"time_to_ready_s": ready, "max_tokens": args.max_tokens, "runs": args.runs,
            "output_tok_s": rate, "ttft_p50_s": ttft}


if __name__ == "__main__":
    main()
