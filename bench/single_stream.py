"""Time-to-ready and single-stream speed of a freshly started Switchboard on the embedded model.

    python bench/single_stream.py [--runs 5] [--max-tokens 128]

Starts ``switchboard serve`` itself, measures process start → ``/health`` 200, then streams
``--runs`` completions of exactly ``--max-tokens`` tokens (end-of-sequence banned with the
standard ``logit_bias``) and prints TTFT and output tokens/s.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time

import httpx


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "switchboard", "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                sys.exit("server exited")
            time.sleep(0.01)
        ready = time.monotonic() - started
        print(f"time to ready (process start -> /health 200): {ready:.2f} s")
        eog = {"0": -100, "2": -100, "4": -100}  # SmolLM2's end-of-generation tokens
        rates, ttfts = [], []
        for _ in range(args.runs):
            body = {
                "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
                "max_tokens": args.max_tokens, "stream": True, "logit_bias": eog,
                "stream_options": {"include_usage": True},
            }
            t0 = time.monotonic()
            first = None
            tokens = 0
            with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=120) as r:
                for line in r.iter_lines():
                    if not line.startswith("data: {"):
                        continue
                    chunk = json.loads(line[6:])
                    if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                        first = first or time.monotonic()
                    if chunk.get("usage"):
                        tokens = chunk["usage"]["completion_tokens"]
            end = time.monotonic()
            assert first is not None and tokens == args.max_tokens, tokens
            ttfts.append(first - t0)
            rates.append(tokens / (end - t0))
        print(
            f"single stream, {args.max_tokens} tokens x {args.runs}: "
            f"{statistics.median(rates):.1f} output tok/s (median, TTFT included), "
            f"TTFT p50 {statistics.median(ttfts) * 1000:.0f} ms"
        )
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
