"""Many conversations at once, several turns each: what the prefix cache serves, and at what speed.

    python bench/conversations.py [--clients 16] [--turns 4] [--tokens 64] [--serve-args ARGS]

Each client holds its own conversation (its own first question) and sends its turns one after
another; a turn's messages are the whole history so far, with the model's earlier answers. All
clients run at once. Printed per turn: TTFT p50, the share of prompt tokens served from the
prefix cache (``usage.prompt_tokens_details.cached_tokens``), and the output tok/s of the whole
run. End-of-sequence is banned so every answer is ``--tokens`` long.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import statistics
import time

import httpx

from common import EOG_BAN, Result, bench_parser, run_benchmark, switchboard

MODEL = "smollm2-135m-instruct"
TOPICS = ["dragons", "the sea", "trains", "volcanoes", "bees", "chess", "rain", "glaciers",
          "owls", "bridges", "comets", "deserts", "violins", "tides", "maps", "lanterns"]


async def turn(client: httpx.AsyncClient, messages: list[dict], tokens: int,
               seed: int) -> tuple[float, str, int, int]:
    """One streamed turn: TTFT, the answer, prompt tokens and how many came from the cache."""
    body = {"model": MODEL, "messages": messages, "max_tokens": tokens, "stream": True,
            "stream_options": {"include_usage": True}, "logit_bias": EOG_BAN,
            "temperature": 0.7, "seed": seed}
    t0 = time.monotonic()
    first, parts, usage = None, [], {}
    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk["choices"] and (text := chunk["choices"][0]["delta"].get("content")):
                first = first or time.monotonic()
                parts.append(text)
            usage = chunk.get("usage") or usage
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return (first or time.monotonic()) - t0, "".join(parts), usage["prompt_tokens"], cached


async def conversation(base: str, index: int, turns: int, tokens: int) -> list[tuple]:
    topic = TOPICS[index % len(TOPICS)]
    messages = [{"role": "user", "content": f"Conversation {index}: tell me about {topic}."}]
    results = []
    async with httpx.AsyncClient(base_url=base, timeout=600) as client:
        for t in range(turns):
            ttft, answer, prompt, cached = await turn(client, messages, tokens, 100 * index + t)
            results.append((ttft, prompt, cached))
            messages += [{"role": "assistant", "content": answer},
                         {"role": "user", "content": f"Tell me more, part {t + 2}."}]
    return results


async def run(base: str, clients: int, turns: int, tokens: int) -> Result:
    started = time.monotonic()
    runs = await asyncio.gather(*(conversation(base, i, turns, tokens) for i in range(clients)))
    elapsed = time.monotonic() - started
    print("| turn | TTFT p50 | prompt tokens from the cache |")
    print("|---|---|---|")
    per_turn = []
    for t in range(turns):
        ttfts = [r[t][0] for r in runs]
        prompt = sum(r[t][1] for r in runs)
        cached = sum(r[t][2] for r in runs)
        print(f"| {t + 1} | {statistics.median(ttfts) * 1000:,.0f} ms | "
              f"{cached:,} of {prompt:,} ({cached / prompt:.0%}) |")
        per_turn.append({"turn": t + 1, "ttft_p50_s": statistics.median(ttfts),
                         "prompt_tokens": prompt, "cached_tokens": cached})
    tok_s = clients * turns * tokens / elapsed
    print(f"output: {tok_s:.1f} tok/s over {elapsed:.0f} s")
    return {"output_tok_s": tok_s, "elapsed_s": elapsed, "turns": per_turn}


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--serve-args", default="", help="extra `switchboard serve` arguments")
    run_benchmark(parser, measure)


def measure(args: argparse.Namespace) -> Result:
    with switchboard("--threads", "2", *shlex.split(args.serve_args)) as (base, _):
        return asyncio.run(run(base, args.clients, args.turns, args.tokens))


if __name__ == "__main__":
    main()
