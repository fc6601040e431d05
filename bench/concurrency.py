"""Streaming throughput at 1, 4 and 16 concurrent clients: Switchboard vs llama-cpp-python's server.

    pip install 'llama-cpp-python[server]'   # only for the comparison
    python bench/concurrency.py [--tokens 128] [--levels 1 4 16] [--only switchboard]
    python bench/concurrency.py --llama-server path/to/llama-server   # llama.cpp's own, too

Both servers get the same shipped GGUF: Switchboard with 2 threads, llama-cpp-python's server
twice, as it starts by default (decode on half the cores) and with ``--n_threads 2``. Every
request streams exactly ``--tokens`` tokens (end-of-sequence banned through ``logit_bias``). Each
level runs ``--rounds`` times (this machine class is noisy) and the median round is printed:
aggregate output tok/s, TTFT p50 and inter-token latency p50 / p99, then Switchboard's ratio to
each llama-cpp-python configuration. With ``--llama-server`` (llama.cpp's C++ server, built from
the llama.cpp that llama-cpp-python vendors) it is measured too, as the engine issue's reference
figures were taken: ``-np 16``, its default threads, on the same file and the same kind of CPU
weight buffers.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shlex
import statistics
import sys
import time
from contextlib import AbstractContextManager

import httpx

from common import EOG_BAN, Result, bench_parser, free_port, launched, run_benchmark, switchboard
from switchboard.engine.embedded import embedded_model_path
from switchboard.engine.kernel_probe import extra_buffers_run

MODEL = "smollm2-135m-instruct"


# llama-cpp-python's server started with llama.cpp's generic CPU weight buffers: on CPUs whose
# AMX kernels crash (see switchboard.engine.kernel_probe) it has no option of its own for that.
GENERIC_BUFFERS_SERVER = """
import runpy, llama_cpp.llama_cpp as c
default = c.llama_model_default_params
def generic():
    params = default()
    params.use_extra_bufts = False
    return params
c.llama_model_default_params = generic
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


def llama_cpp_server(*flags: str) -> AbstractContextManager[tuple[str, float]]:
    """llama-cpp-python's own server on the same file, queueing rather than cutting requests,
    on the same kind of llama.cpp kernels as Switchboard's engine."""
    port = free_port()
    path = embedded_model_path()
    launcher = ["-m", "llama_cpp.server"] if extra_buffers_run(path) else [
        "-c", GENERIC_BUFFERS_SERVER]
    cmd = [
        sys.executable, *launcher, "--model", str(path),
        "--model_alias", MODEL, "--n_ctx", "8192", "--port", str(port),
        "--interrupt_requests", "False", *flags,
    ]
    return launched(cmd, "/v1/models", port)


def llama_server(binary: str, *flags: str) -> AbstractContextManager[tuple[str, float]]:
    """llama.cpp's C++ server, 16 slots; without its extra weight buffers where they crash."""
    port = free_port()
    path = embedded_model_path()
    cmd = [binary, "--model", str(path), "--alias", MODEL, "--port", str(port), "-np", "16",
           *flags]
    if not extra_buffers_run(path):
        cmd.append("--no-repack")
    return launched(cmd, "/v1/models", port)


# llama-cpp-python's server as it starts by default (decode on half the cores, prefill on all:
# the configuration the engine issue's reference figures were taken with), and given 2 threads.
LLAMA_CPP_CONFIGS = {
    "llama-cpp-python (default threads)": (),
    "llama-cpp-python (--n_threads 2)": ("--n_threads", "2"),
}


async def one(
    base: str, i: int, tokens: int, extra: dict | None = None
) -> tuple[float, list[float], int]:
    """Stream one completion over a raw asyncio connection: an HTTP client library's own CPU
    use would be taken from the 2 cores the server is measured on."""
    request = {
        "model": MODEL, "max_tokens": tokens, "logit_bias": EOG_BAN, "stream": True,
        "temperature": 0.7, "seed": i,
        "messages": [{"role": "user",
                      "content": f"Tell story {i} ({time.time_ns()}) of a dragon."}],
    }
    body = json.dumps({**request, **(extra or {})}).encode()
    url = httpx.URL(base)
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
    )
    await writer.drain()
    stamps: list[float] = []
    while (line := await reader.readline()) not in (b"\r\n", b""):
        pass  # response headers
    async for line in reader:  # chunked framing lines and SSE lines alike
        if line.startswith(b"data: {"):
            choices = json.loads(line[6:]).get("choices") or [{}]
            if choices[0].get("delta", {}).get("content"):
                stamps.append(time.monotonic())
    writer.close()
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return stamps[0] - t0, gaps, len(stamps)


async def level(
    base: str, clients: int, tokens: int, extra: dict | None = None
) -> dict[str, float]:
    t0 = time.monotonic()
    results = await asyncio.gather(*(one(base, i, tokens, extra) for i in range(clients)))
    wall = time.monotonic() - t0
    gaps = sorted(g for _, gs, _ in results for g in gs)
    chunks = sum(n for _, _, n in results)
    return {
        "tok_s": chunks / wall,
        "chunks": chunks,
        "ttft_p50": statistics.median(t for t, _, _ in results),
        "itl_p50": statistics.median(gaps) if gaps else 0.0,
        "itl_p99": gaps[int(0.99 * (len(gaps) - 1))] if gaps else 0.0,
    }


def run(name: str, base: str, levels: list[int], tokens: int,
        rounds: int) -> dict[int, dict[str, float]]:
    """Print one table row per level; return each level's median round."""
    asyncio.run(level(base, 1, 8))  # warm-up
    rates = {}
    for clients in levels:
        results = [asyncio.run(level(base, clients, tokens)) for _ in range(rounds)]
        r = sorted(results, key=lambda x: x["tok_s"])[len(results) // 2]  # the median round
        print(
            f"| {name} | {clients} | {r['tok_s']:.1f} | {r['ttft_p50'] * 1000:.0f} ms | "
            f"{r['itl_p50'] * 1000:.1f} ms | {r['itl_p99'] * 1000:.1f} ms |", flush=True,
        )
        rates[clients] = r
    return rates


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--only", choices=["switchboard", "llama-cpp-python"])
    parser.add_argument("--llama-server", metavar="BINARY",
                        help="also measure llama.cpp's own server (a llama-server binary)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per level; median shown")
    parser.add_argument(
        "--serve-args", default="", help='extra switchboard flags, e.g. "--weights original"'
    )
    run_benchmark(parser, measure)


def measure(args: argparse.Namespace) -> Result:
    print("| server | clients | output tok/s | TTFT p50 | ITL p50 | ITL p99 |")
    print("|---|---|---|---|---|---|")
    rates: dict[str, dict[int, dict[str, float]]] = {}
    if args.only != "llama-cpp-python":
        with switchboard("--threads", "2", *shlex.split(args.serve_args)) as (base, _):
            rates["switchboard"] = run("switchboard", base, args.levels, args.tokens, args.rounds)
    if args.only != "switchboard":
        for name, flags in LLAMA_CPP_CONFIGS.items():
            with llama_cpp_server(*flags) as (base, _):
                rates[name] = run(name, base, args.levels, args.tokens, args.rounds)
    if args.llama_server:
        with llama_server(args.llama_server) as (base, _):
            rates["llama-server"] = run("llama-server -np 16", base, args.levels, args.tokens,
                                        args.rounds)
    ours = rates.get("switchboard")
    for name, theirs in rates.items():
        if ours and name != "switchboard":
            ratios = ", ".join(f"{ours[c]['tok_s'] / theirs[c]['tok_s']:.1f}x at {c}"
                               for c in args.levels)
            print(f"switchboard vs {name}: {ratios}")
    return {"servers": {name: {str(c): r for c, r in levels.items()}
                        for name, levels in rates.items()}}


if __name__ == "__main__":
    main()
