"""Does the usage ledger keep up with a saturated server, and does the server's memory stay level?

    python bench/ledger_soak.py [--rounds 9] [--seconds 10] [--database-url URL]

The gateway in front of nginx (as in ``bench/governance.py``), a static key, every request in the
ledger (SQLite in a temporary data directory unless ``--database-url``). Each round is ``wrk``
with 32 connections saturating the server; after it the script prints the server's RSS and how
many requests are not in the ledger yet (``/admin/usage`` against ``wrk``'s count, plus the 32
requests in flight when ``wrk`` stops, which the server still answers and records). A ledger that
keeps up stays near 0; one that falls behind grows, and so does the memory holding its rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import httpx

from common import Result, bench_parser, free_port, launched, listener_pid, run_benchmark
from gateway import KEY, static_upstream, wrk
from governance import ADMIN, config


def rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
    return 0


def ledger_rows(base: str) -> int:
    usage = httpx.get(base + "/admin/usage", params={"group_by": "key"},
                      headers={"authorization": f"Bearer {ADMIN}"}).json()["data"]
    return sum(u["requests"] for u in usage)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--database-url", help="the ledger's database (default: SQLite)")
    run_benchmark(parser, measure)


def measure(args: argparse.Namespace) -> Result:
    rounds = []
    with static_upstream("sb-ledger-soak-") as (tmp, upstream):
        store = (["--database-url", args.database_url] if args.database_url
                 else ["--data-dir", str(tmp / "data")])
        port = free_port()
        command = [sys.executable, "-m", "switchboard", "serve", "--port", str(port),
                   "--log-level", "warning", "--admin-key", ADMIN, "--api-key", KEY,
                   "--config", str(config(tmp, upstream)), *store]
        with launched(command, "/health", port) as (base, _):
            url = base + "/v1/chat/completions"
            pid = listener_pid(port)
            sent = 0
            print("| round | req/s | server RSS | requests not in the ledger yet |")
            print("|---|---|---|---|")
            for r in range(args.rounds):
                result = wrk(url, "bench", 32, args.seconds, False, tmp, KEY)
                sent += result["requests"] + 32  # + those in flight when wrk stopped
                rss, behind = rss_mb(pid), sent - ledger_rows(base)
                print(f"| {r + 1} | {result['rps']:,.0f} | {rss} MB | {behind:,} |", flush=True)
                rounds.append({"round": r + 1, "rps": result["rps"], "server_rss_mb": rss,
                               "requests_not_in_ledger": behind})
    return {"rounds": rounds}


if __name__ == "__main__":
    main()
