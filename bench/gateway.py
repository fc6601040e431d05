"""Gateway overhead: Switchboard vs LiteLLM's proxy in front of an upstream that costs nothing.

nginx on loopback answers every chat completion with a fixed body (a JSON completion, or an SSE
stream of 12 events); ``wrk`` is the client. Both proxies run one process, with auth on, and are
measured in the same run. Needs Debian's ``nginx-light`` and ``wrk``; ``--litellm`` installs
``litellm[proxy]`` into a cached virtualenv on first use.

    python bench/gateway.py --litellm            # the Performance page's table
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from common import Result, bench_parser, free_port, launched, run_benchmark

KEY = "sk-bench-0123456789"
LITELLM_VENV = Path.home() / ".cache" / "switchboard-bench" / "litellm"
COMPLETION = {
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000,
    "model": "bench-upstream",
    "choices": [{"index": 0, "message": {"role": "assistant",
                                         "content": "Hello! How can I help you today?"},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
}
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
wrk.body = '%s'
"""

# Paced load: each connection waits an exponentially distributed pause before its next request,
# so the connections together offer a fixed mean rate (Poisson-like arrivals) instead of
# saturating the server; the latency wrk reports then is service time, not queueing.
WRK_PACED = """
function delay()
   return -math.log(1 - math.random()) * %f
end
"""


def sse_body() -> str:
    head = {k: COMPLETION[k] for k in ("id", "created", "model")}
    head["object"] = "chat.completion.chunk"
    events = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "finish_reason": None}]}]
    for word in ["Hello", "!", " How", " can", " I", " help", " you", " today", "?"]:
        events.append({**head, "choices": [{"index": 0, "delta": {"content": word},
                                            "finish_reason": None}]})
    events.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append({**head, "choices": [], "usage": COMPLETION["usage"]})
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"


def nginx_conf(tmp: Path, port: int) -> Path:
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_buffer_size 64k;
  server {{
    listen 127.0.0.1:{port};
    location /plain/v1/chat/completions {{
      default_type application/json; return 200 '{json.dumps(COMPLETION)}'; }}
    location /stream/v1/chat/completions {{
      default_type text/event-stream; return 200 '{sse_body()}'; }}
  }}
}}
""")
    return conf


@contextmanager
def static_upstream(prefix: str) -> Iterator[tuple[Path, str]]:
    """nginx answering fixed completions on a free loopback port, until the block ends: yields
    a scratch folder and nginx's base URL. Exits with a hint when nginx or wrk is missing."""
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed: apt-get install nginx-light wrk")
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    port = free_port()
    command = ["nginx", "-c", str(nginx_conf(tmp, port))]
    with launched(command, "/plain/v1/chat/completions", port) as (base, _):
        yield tmp, base


def body(model: str, stream: bool) -> str:
    request = {"model": model, "max_tokens": 32, "temperature": 0.7, "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello! Say something nice."}]}
    if stream:
        request["stream"] = True
    return json.dumps(request)


def wrk(url: str, model: str, connections: int, seconds: int, stream: bool, tmp: Path,
        key: str = KEY, rate: float | None = None) -> dict:
    """Run ``wrk``; with ``rate`` (requests/s over all connections) the load is paced."""
    script = tmp / f"wrk-{model}-{connections}.lua"
    lua = WRK_SCRIPT % (key, body(model, stream))
    if rate:
        lua += WRK_PACED % (1000 * connections / rate)
    script.write_text(lua)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    percentiles = {
        f"p{pct}_ms": float(m.group(1)) * scale[m.group(2)]
        for pct in (50, 90, 99)
        if (m := re.search(rf"\b{pct}%\s+([\d.]+)(us|ms|s)", out))
    }
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sent = re.search(r"(\d+) requests in", out)
    return {"rps": rps, "requests": int(sent.group(1)) if sent else 0, **percentiles,
            "errors": int(errors.group(1)) if errors else 0}


def litellm_python() -> Path:
    python = LITELLM_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "litellm[proxy]"], check=True)
    return python


def switchboard_server(tmp: Path, upstream: str) -> Callable[[int], list[str]]:
    """The command line of Switchboard in front of ``upstream``, for a port."""
    config = tmp / "switchboard.yaml"
    config.write_text(json.dumps({
        "deployments": [
            {"id": "plain", "provider": "openai-compatible", "base_url": upstream + "/plain/v1",
             "model": "bench-upstream"},
            {"id": "stream", "provider": "openai-compatible", "base_url": upstream + "/stream/v1",
             "model": "bench-upstream"},
        ],
        "models": [
            {"name": "bench", "deployments": ["plain"],
             "price": {"input_per_million": 0.5, "output_per_million": 1.5}},
            {"name": "bench-stream", "deployments": ["stream"]},
        ],
    }))
    return lambda port: [
        sys.executable, "-m", "switchboard", "serve", "--config", str(config), "--api-key", KEY,
        "--port", str(port), "--log-level", "warning", "--data-dir", str(tmp / "data")]


def litellm_server(tmp: Path, upstream: str) -> Callable[[int], list[str]]:
    """The command line of LiteLLM's proxy (one worker) in front of ``upstream``, for a port."""
    python = litellm_python()
    config = tmp / "litellm.yaml"
    config.write_text(json.dumps({
        "model_list": [
            {"model_name": "bench", "litellm_params": {
                "model": "openai/bench-upstream", "api_base": upstream + "/plain/v1",
                "api_key": "unused"}},
            {"model_name": "bench-stream", "litellm_params": {
                "model": "openai/bench-upstream", "api_base": upstream + "/stream/v1",
                "api_key": "unused"}},
        ],
        "general_settings": {"master_key": KEY},
        "litellm_settings": {"telemetry": False},
    }))
    return lambda port: [
        str(python.parent / "litellm"), "--config", str(config), "--port", str(port),
        "--num_workers", "1"]


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--litellm", action="store_true", help="also measure LiteLLM's proxy")
    run_benchmark(parser, measure)


def measure(args: argparse.Namespace) -> Result:
    rows = []
    with static_upstream("sb-gw-bench-") as (tmp, upstream):
        servers = {"Switchboard": switchboard_server(tmp, upstream)}
        if args.litellm:
            servers["LiteLLM proxy"] = litellm_server(tmp, upstream)
        direct = wrk(upstream + "/plain/v1/chat/completions", "bench", 1, 3, False, tmp)
        for name, command in servers.items():
            port = free_port()
            ready = "/health" if name == "Switchboard" else "/health/liveliness"
            with launched(command(port), ready, port):
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                wrk(url, "bench", 4, 2, False, tmp)  # warm up
                c32 = wrk(url, "bench", 32, args.seconds, False, tmp)
                c1 = wrk(url, "bench", 1, args.seconds, False, tmp)
                streamed = wrk(url, "bench-stream", 8, args.seconds, True, tmp)
            rows.append((name, c32, c1, streamed))
    print(f"nginx direct, 1 connection: p50 {direct['p50_ms']:.2f} ms\n")
    print("| proxy | req/s @32 (p50) | req/s @1 (p50, added) | streamed req/s @8 | errors |")
    print("|---|---|---|---|---|")
    for name, c32, c1, streamed in rows:
        added = c1["p50_ms"] - direct["p50_ms"]
        errors = c32["errors"] + c1["errors"] + streamed["errors"]
        print(f"| {name} | {c32['rps']:,.0f} ({c32['p50_ms']:.1f} ms) | {c1['rps']:,.0f} "
              f"({c1['p50_ms']:.2f} ms, +{added:.2f} ms) | {streamed['rps']:,.0f} | {errors} |")
    return {"nginx_direct_p50_ms": direct["p50_ms"],
            "proxies": {name: {"c32": a, "c1": b, "stream": c} for name, a, b, c in rows}}


if __name__ == "__main__":
    main()
