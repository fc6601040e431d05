"""Governance overhead: the same Switchboard with governance off, then on (a stored key with
rpm/tpm limits and a budget, every request in the ledger), on SQLite or PostgreSQL with
in-process counters and on PostgreSQL + Redis; then the ledger's raw write rate on SQLite and
PostgreSQL and one Redis limit check alone. Also printed: Redis script calls per request (how
well the limit checks batch) and how busy the server's event-loop thread was when saturated
(from /proc: at 100 % it is the bottleneck), with its CPU per request (lowest–highest round:
the spread between rounds of one setup is the VM's noise).

The upstream is nginx answering a fixed completion (as in ``bench/gateway.py``); ``wrk`` is the
client. PostgreSQL and Redis are throwaway servers from Debian's packages (``bench/services.py``).

    python bench/governance.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from common import (
    Result,
    bench_parser,
    free_port,
    launched,
    listener_pid,
    main_thread_cpu_s,
    run_benchmark,
)
from gateway import KEY, static_upstream, wrk
from services import postgres_server, redis_server

ADMIN = "sb-bench-admin-0123456789"


def config(tmp: Path, upstream: str) -> Path:
    path = tmp / "switchboard.yaml"
    path.write_text(json.dumps({
        "deployments": [{"id": "plain", "provider": "openai-compatible",
                         "base_url": upstream + "/plain/v1", "model": "bench-upstream"}],
        "models": [{"name": "bench", "deployments": ["plain"],
                    "price": {"input_per_million": 0.5, "output_per_million": 1.5}}],
    }))
    return path


def script_calls(redis_url: str | None) -> int:
    """Lua script calls Redis has run so far (0 without Redis)."""
    if redis_url is None:
        return 0
    from redis import Redis

    with Redis.from_url(redis_url) as client:
        stats = client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k.startswith("cmdstat_evalsha"))


def measure_setup(name: str, args: list[str], tmp: Path, seconds: int, governed: bool,
                  paced_rate: float, redis_url: str | None = None) -> dict:
    port = free_port()
    command = [sys.executable, "-m", "switchboard", "serve", "--port", str(port),
               "--log-level", "warning", "--admin-key", ADMIN, *args]
    with launched(command, "/health", port) as (base, _):
        key, key_id = KEY, None
        if governed:
            made = httpx.post(base + "/admin/keys", headers={"authorization": f"Bearer {ADMIN}"},
                              json={"name": "bench", "rpm": 10**9, "tpm": 10**9,
                                    "budget_usd": 10**9, "budget_period": "30d"}).json()
            key, key_id = made["key"], made["id"]
        url = base + "/v1/chat/completions"
        warm = wrk(url, "bench", 4, 2, False, tmp, key)
        pid = listener_pid(port)
        calls, cpu = script_calls(redis_url), main_thread_cpu_s(pid)
        c32 = wrk(url, "bench", 32, seconds, False, tmp, key)
        loop_cpu = main_thread_cpu_s(pid) - cpu
        c32["loop_busy"] = loop_cpu / seconds
        c32["loop_us"] = 1e6 * loop_cpu / max(1, c32["requests"])
        c32["calls"] = script_calls(redis_url) - calls
        paced = wrk(url, "bench", 32, seconds, False, tmp, key, rate=paced_rate)
        calls = script_calls(redis_url)
        c1 = wrk(url, "bench", 1, seconds, False, tmp, key)
        c1["calls"] = script_calls(redis_url) - calls
        rows = None
        sent = c32["requests"] + paced["requests"] + c1["requests"]
        if governed:  # every request the measured runs sent is in the ledger (warm-up aside)
            usage = httpx.get(base + "/admin/usage", params={"group_by": "key",
                                                              "key_id": key_id},
                              headers={"authorization": f"Bearer {ADMIN}"}).json()["data"]
            rows = sum(u["requests"] for u in usage) - warm["requests"]
    return {"name": name, "c32": c32, "paced": paced, "c1": c1, "ledger_rows": rows,
            "sent": sent}


async def ledger_rate(url: str, batch: int,
                      rows: int = 50_000) -> tuple[float, float, float | None]:
    """Ledger rows/s written in batches of ``batch``, this process's CPU µs per row (with
    SQLite that includes the database's own work; PostgreSQL's runs in its server), and on
    SQLite rows/s again while another thread keeps the GIL busy, as a saturated event loop does
    (SQLite's writes run in a thread of their own and must get the GIL back)."""
    from switchboard.persistence import Database
    from switchboard.persistence.database import database_url
    from switchboard.persistence.usage import UsageRepository

    db = Database(database_url(url, Path()))
    await db.open()
    repo = UsageRepository(db)
    now = datetime.now(UTC)
    row = {"request_id": "r", "created_at": now, "day": now.strftime("%Y-%m-%d"),
           "key_id": "key_bench", "session_id": None, "endpoint": "chat.completions",
           "model": "bench", "deployment": "plain", "provider": "openai-compatible",
           "stream": False, "status": 200, "error": None, "input_tokens": 12,
           "output_tokens": 9, "cached_tokens": 0, "cost_usd": 0.0000195, "latency_s": 0.002,
           "ttft_s": 0.002, "metrics": {"input_tokens": 12, "output_tokens": 9},
           "parameters": {"temperature": 0.7}, "content": None}
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(rows // batch):
        await repo.insert_many([row] * batch)
    rate = rows / (time.perf_counter() - started)
    cpu_us = (time.process_time() - cpu) / rows * 1e6
    if not url.startswith("sqlite"):  # asyncpg runs on the event loop: nothing to hand over
        await db.close()
        return rate, cpu_us, None
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            sum(range(1000))

    spinner = threading.Thread(target=busy)
    spinner.start()
    started, busy_rows = time.perf_counter(), min(rows, 20 * batch)
    try:
        for _ in range(busy_rows // batch):
            await repo.insert_many([row] * batch)
    finally:
        stop.set()
        spinner.join()
    busy_rate = busy_rows / (time.perf_counter() - started)
    await db.close()
    return rate, cpu_us, busy_rate


async def limit_check(url: str, checks: int = 3000) -> tuple[float, float]:
    """One key's limit check against Redis (rpm, tpm, parallel and budget, each request settled
    in the next check's call): p50 latency and client CPU per request, both in µs."""
    from switchboard.governance.limits import Scope, Spend
    from switchboard.governance.redis_limits import RedisLimitStore

    store = RedisLimitStore(url, namespace=f"bench-{time.time_ns()}")
    scopes = [Scope("k:bench", rpm=10**9, tpm=10**9)]
    spend = Spend("k:bench:0", 10**9, 3600)
    await store.seed_spend(spend, 0.0)
    latencies = []
    cpu = time.process_time()
    for i in range(checks):
        started = time.perf_counter()
        await store.admit(f"m{i}", scopes, ("k:bench", 100), spend)
        latencies.append(time.perf_counter() - started)
        await store.settle(scopes, 20, "k:bench", spend, 1e-5, f"m{i}")
    cpu_us = (time.process_time() - cpu) / checks * 1e6
    await store.close()
    return statistics.median(latencies[checks // 10:]) * 1e6, cpu_us


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--paced-rate", type=float, default=500,
                        help="requests/s offered by 32 paced connections (below saturation)")
    run_benchmark(parser, measure)


def measure(args: argparse.Namespace) -> Result:
    runs: dict[str, list[dict]] = {}
    with (static_upstream("sb-gov-bench-") as (tmp, upstream), postgres_server() as pg,
          redis_server() as redis):
        cfg = ["--config", str(config(tmp, upstream))]
        setups = [
            ("off (--api-key, --no-ledger)",
             [*cfg, "--api-key", KEY, "--no-ledger", "--data-dir", str(tmp / "off")], False,
             None),
            ("on: SQLite, in-process counters", [*cfg, "--data-dir", str(tmp / "on")], True,
             None),
            ("on: PostgreSQL, in-process counters", [*cfg, "--database-url", pg], True, None),
            ("on: PostgreSQL + Redis", [*cfg, "--database-url", pg, "--redis-url", redis],
             True, redis),
        ]
        for _ in range(args.rounds):  # alternated, so drift on a shared machine hits all
            for name, setup, governed, redis_url in setups:
                runs.setdefault(name, []).append(measure_setup(
                    name, setup, tmp, args.seconds, governed, args.paced_rate, redis_url))
        writes = {(name, batch): asyncio.run(ledger_rate(url, batch))
                  for name, url in (("SQLite", f"sqlite:///{tmp / 'ledger.db'}"),
                                    ("PostgreSQL", pg))
                  for batch in (50, 500, 2000)}
        check = asyncio.run(limit_check(redis))

    def median(name: str, path: tuple[str, str]) -> float:
        return statistics.median(r[path[0]][path[1]] for r in runs[name])

    base = next(iter(runs))
    print(f"medians of {args.rounds} alternated rounds, {args.seconds} s each\n")
    print("32 connections saturating the server (closed loop), then 32 connections offering a "
          f"paced {args.paced_rate:,.0f} req/s (Poisson arrivals), then 1 connection:\n")
    print("| governance | saturated: req/s (p50) | CPU per request vs off | "
          f"paced {args.paced_rate:,.0f} req/s: p50 (added), p99 | "
          "1 connection: req/s (p50, added) | ledger rows | Redis calls per request @32 / @1 | "
          "event loop busy, saturated | event-loop CPU per request, saturated |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, results in runs.items():
        rps32, p50_32 = median(name, ("c32", "rps")), median(name, ("c32", "p50_ms"))
        paced50, paced99 = median(name, ("paced", "p50_ms")), median(name, ("paced", "p99_ms"))
        rps1, p50_1 = median(name, ("c1", "rps")), median(name, ("c1", "p50_ms"))
        extra = 1000 / rps32 - 1000 / median(base, ("c32", "rps"))
        paced_added = paced50 - median(base, ("paced", "p50_ms"))
        added = p50_1 - median(base, ("c1", "p50_ms"))
        rows = results[-1]["ledger_rows"]
        sent = results[-1]["sent"]
        ledger = f"{rows:,} of {sent:,}" if rows is not None else "-"
        last = results[-1]
        calls = (f"{last['c32']['calls'] / last['c32']['requests']:.2f} / "
                 f"{last['c1']['calls'] / last['c1']['requests']:.2f}"
                 if last["c32"]["calls"] else "-")
        print(f"| {name} | {rps32:,.0f} ({p50_32:.1f} ms) | {extra:+.3f} ms | "
              f"{paced50:.2f} ms ({paced_added:+.2f} ms), {paced99:.2f} ms | "
              f"{rps1:,.0f} ({p50_1:.2f} ms, {added:+.2f} ms) | {ledger} | {calls} | "
              f"{100 * median(name, ('c32', 'loop_busy')):.0f} % | "
              f"{min(r['c32']['loop_us'] for r in results):.0f}–"
              f"{max(r['c32']['loop_us'] for r in results):.0f} µs |")
    print("\n| ledger writes | batch | rows/s | CPU per row in this process | rows/s, GIL busy |")
    print("|---|---|---|---|---|")
    for (name, batch), (rate, cpu_us, busy_rate) in writes.items():
        busy = f"{busy_rate:,.0f}" if busy_rate is not None else "-"
        print(f"| {name} | {batch:,} | {rate:,.0f} | {cpu_us:.1f} µs | {busy} |")
    print(f"\nRedis limit check: p50 {check[0]:.0f} µs, client CPU {check[1]:.0f} µs per request")
    return {
        "rounds": runs,
        "ledger_writes": [{"database": name, "batch": batch, "rows_per_s": rate,
                           "cpu_us_per_row": cpu_us, "rows_per_s_gil_busy": busy_rate}
                          for (name, batch), (rate, cpu_us, busy_rate) in writes.items()],
        "redis_limit_check": {"p50_us": check[0], "client_cpu_us": check[1]},
    }


if __name__ == "__main__":
    main()
