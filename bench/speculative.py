"""Speculative decoding with prompt-lookup drafts: one client, greedy requests, speculation on
against off, rounds alternated between servers, medians.

    python bench/speculative.py [--rounds 3] [--tokens 128] [--no-default]
    python bench/speculative.py --llama-server path/to/llama-server   # llama.cpp's own, too
    python bench/speculative.py --draft-model small.gguf   # a draft model's guesses, too

Workloads (all greedy, ``max_tokens`` tokens streamed): ``quote`` answers with quotes from a
document of about 1,000 tokens; ``json`` rewrites a JSON object with one field changed; ``code``
edits a 60-line Python file; ``chat`` is free chat on a unique question each time, with
end-of-sequence banned. Servers: ``on`` (``--kv-layout unified --speculative``: flash attention
is on by default there, which speculation needs), ``off`` (``--kv-layout unified
--no-speculative``) and, unless ``--no-default``, ``default`` (the default per-sequence layout
without flash attention, where nothing speculates); with ``--draft-model GGUF``, ``draft``
(``on`` with that draft model guessing instead of prompt lookups). With ``--llama-server``
llama.cpp's own server (``-np 16 -c 32768``: 2,048 tokens a slot, as the engine's default
streams) is measured too, and each Switchboard server's decode tok/s is given as a ratio to it.
The figures: decode tok/s after the first token, request seconds, and for ``on`` and ``draft``
the drafted and accepted tokens
(from ``/metrics``) and the acceptance rate.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics

import httpx

from common import EOG_BAN, Result, bench_parser, run_benchmark, stream_once, switchboard
from concurrency import MODEL, llama_server

SPECULATING = ("on", "draft")  # the servers whose /metrics count drafts
TOPICS = ["harbour", "granary", "observatory", "library", "railway", "orchard", "foundry",
          "market", "bridge", "school"]


def document() -> str:
    """About 1,000 tokens of plain, varied prose (a town's records)."""
    lines = []
    for i, topic in enumerate(TOPICS * 2):
        lines.append(
            f"Record {i + 1}: the {topic} of Varnholm was inspected on day {3 * i + 2} by "
            f"officer {['Ada', 'Bruno', 'Celia', 'Dmitri', 'Ewa'][i % 5]} {i * 7 + 11}. "
            f"It held {40 + i * 13} crates, {i % 4 + 2} wagons and a ledger of {120 + i} pages; "
            f"the keeper asked for {i % 3 + 1} new lamps and a roof repair before winter."
        )
    return "\n".join(lines)


def person() -> dict[str, object]:
    return {"id": 4821, "name": "Maren Holt", "email": "maren.holt@example.org", "age": 41,
            "city": "Bergen", "country": "Norway", "team": "platform", "manager": "J. Okafor",
            "languages": ["Norwegian", "English", "German"], "active": True,
            "joined": "2019-04-02", "phone": "+47 555 0142", "desk": "B-214"}


def code_file() -> str:
    body = []
    for i in range(12):
        body += [f"def step_{i}(values: list[int]) -> int:",
                 f"    total = sum(v * {i + 2} for v in values)",
                 f"    if total > {100 * (i + 1)}:",
                 f"        return total - {i + 3}",
                 "    return total"]
    return "\n".join(body)


def prompts(round_no: int) -> dict[str, str]:
    record = 4 + round_no
    return {
        "quote": f"{document()}\n\nQuote, word for word, the records that mention the "
                 f"{TOPICS[record % 10]}. Quote only.",
        "json": f"Here is a JSON object:\n{json.dumps(person(), indent=1)}\n\nRewrite it with "
                f"\"city\" changed to \"Oslo\". Output only the JSON object.",
        "code": f"```python\n{code_file()}\n```\n\nRename every `total` to `acc` in this file "
                "and output the whole file.",
        "chat": f"Tell me something surprising about the number {round_no * 37 + 1001} and "
                f"the colour {['teal', 'amber', 'violet', 'ochre', 'crimson'][round_no % 5]}.",
    }


def spec_counts(base: str) -> tuple[float, float]:
    text = httpx.get(base + "/metrics", timeout=10).text
    def total(name: str) -> float:
        return sum(float(m) for m in re.findall(
            rf"^switchboard:{name}_total{{[^}}]*}} (\S+)$", text, re.M))
    return total("spec_decode_num_draft_tokens"), total("spec_decode_num_accepted_tokens")


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--no-default", action="store_true",
                        help="leave out the default server (no flash attention, no speculation)")
    parser.add_argument("--llama-server", metavar="BINARY",
                        help="also measure llama.cpp's own server (a llama-server binary)")
    parser.add_argument("--draft-model", metavar="GGUF",
                        help="also measure a server speculating with this draft model")
    run_benchmark(parser, measure)


def measure(args: argparse.Namespace) -> Result:
    servers = {"on": ["--kv-layout", "unified", "--speculative"],
               "off": ["--kv-layout", "unified", "--no-speculative"]}
    if not args.no_default:
        servers["default"] = []
    if args.draft_model:
        servers["draft"] = ["--kv-layout", "unified", "--draft-model", args.draft_model]
    if args.llama_server:
        servers["llama-server"] = []
    kinds = list(prompts(0))
    rates: dict[str, dict[str, list[float]]] = {s: {k: [] for k in kinds} for s in servers}
    seconds: dict[str, dict[str, list[float]]] = {s: {k: [] for k in kinds} for s in servers}
    drafted = {s: {k: 0.0 for k in kinds} for s in SPECULATING}
    accepted = {s: {k: 0.0 for k in kinds} for s in SPECULATING}
    with contextlib.ExitStack() as stack:
        bases = {name: stack.enter_context(
            llama_server(args.llama_server, "-c", "32768") if name == "llama-server"
            else switchboard("--threads", "2", *flags))[0] for name, flags in servers.items()}
        for round_no in range(args.rounds + 1):  # round 0 warms up each server
            for kind, text in prompts(round_no).items():
                body = {"model": MODEL, "messages": [{"role": "user", "content": text}],
                        "temperature": 0, "max_tokens": args.tokens}
                if kind == "chat":
                    body["logit_bias"] = EOG_BAN
                order = list(servers) if round_no % 2 else list(reversed(servers))
                for name in order:
                    before = spec_counts(bases[name]) if name in SPECULATING else (0.0, 0.0)
                    t = stream_once(bases[name], body)
                    if round_no == 0:
                        continue
                    rates[name][kind].append((t.tokens - 1) / max(1e-9, t.total - t.ttft))
                    seconds[name][kind].append(t.total)
                    if name in SPECULATING:
                        after = spec_counts(bases[name])
                        drafted[name][kind] += after[0] - before[0]
                        accepted[name][kind] += after[1] - before[1]
    result: Result = {"tokens": args.tokens, "rounds": args.rounds, "workloads": {}}
    print("| workload | server | decode tok/s | request s | drafted | accepted | acceptance |")
    print("|---|---|---|---|---|---|---|")
    for kind in kinds:
        row: Result = {}
        for name in servers:
            tok_s = statistics.median(rates[name][kind])
            secs = statistics.median(seconds[name][kind])
            row[name] = {"decode_tok_s": round(tok_s, 1), "request_s": round(secs, 2)}
            spec = ("", "", "")
            if name in SPECULATING:
                d, a = drafted[name][kind], accepted[name][kind]
                share = a / d if d else 0.0
                row[name].update(drafted=int(d), accepted=int(a), acceptance=round(share, 3))
                spec = (str(int(d)), str(int(a)), f"{share:.0%}")
            print(f"| {kind} | {name} | {tok_s:.1f} | {secs:.2f} | {' | '.join(spec)} |")
        row["speedup_on_vs_off"] = round(row["on"]["decode_tok_s"] / row["off"]["decode_tok_s"], 2)
        if "llama-server" in servers:
            reference = row["llama-server"]["decode_tok_s"]
            row["vs_llama_server"] = {name: round(row[name]["decode_tok_s"] / reference, 2)
                                      for name in servers if name != "llama-server"}
            print(f"| {kind} | ratios to llama-server | " + ", ".join(
                f"{name} {ratio:.2f}x" for name, ratio in row["vs_llama_server"].items()) + " |")
        result["workloads"][kind] = row
    return result


if __name__ == "__main__":
    main()
