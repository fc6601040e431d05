"""``switchboard buckets upload NAME FILES…``: upload documents to a running server's bucket and
follow their embedding with a progress bar (also ``buckets list``)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

BAR = 30


def add_buckets_command(commands: Any) -> None:
    buckets = commands.add_parser("buckets", help="upload documents for retrieval")
    actions = buckets.add_subparsers(dest="action", required=True)
    up = actions.add_parser("upload", help="upload files into a bucket and wait for embedding")
    up.add_argument("b_name", metavar="NAME", help="bucket (created if missing)")
    up.add_argument("b_files", metavar="FILE", nargs="+", type=Path)
    up.add_argument("--chunk-size", dest="b_chunk_size", type=int, default=200,
                    help="tokens per chunk (default 200)")
    up.add_argument("--chunk-overlap", dest="b_chunk_overlap", type=int, default=40,
                    help="tokens shared by neighbouring chunks (default 40)")
    listing = actions.add_parser("list", help="list your buckets")
    for parser in (up, listing):
        parser.add_argument("--url", dest="b_url", default="http://127.0.0.1:8000",
                            help="the server (default http://127.0.0.1:8000)")
        parser.add_argument("--key", dest="b_key", default=os.environ.get("SWITCHBOARD_KEY"),
                            help="API key (default: $SWITCHBOARD_KEY)")


def run_buckets_command(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except aiohttp.ClientError as exc:
        print(f"switchboard: cannot reach {args.b_url}: {exc}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace) -> int:
    headers = {"authorization": f"Bearer {args.b_key}"} if args.b_key else {}
    base = args.b_url.rstrip("/")
    async with aiohttp.ClientSession(headers=headers) as http:
        if args.action == "list":
            async with http.get(f"{base}/v1/buckets") as r:
                body = await r.json()
                if r.status != 200:
                    return _fail(body)
            for b in body["data"]:
                print(f"{b['name']:30}  {b['documents']:5} documents  {b['chunks']:7} chunks")
            return 0
        missing = [str(f) for f in args.b_files if not f.is_file()]
        if missing:
            print(f"switchboard: no such file: {', '.join(missing)}", file=sys.stderr)
            return 2
        form = aiohttp.FormData()
        for path in args.b_files:
            form.add_field("files", path.read_bytes(), filename=path.name)
        form.add_field("document_chunk_size", str(args.b_chunk_size))
        form.add_field("document_chunk_overlap_size", str(args.b_chunk_overlap))
        async with http.post(f"{base}/v1/buckets/{args.b_name}/documents", data=form) as r:
            body = await r.json()
            if r.status != 202:
                return _fail(body)
        task = body["data"]
        return await _follow(http, base, args.b_name, task)


async def _follow(http: aiohttp.ClientSession, base: str, bucket: str,
                  task: dict[str, Any]) -> int:
    wanted = set(task["documents"])
    started = time.monotonic()
    while True:
        async with http.get(f"{base}/v2/ai/embeddings/{task['task_id']}") as r:
            status = (await r.json())["data"]
        async with http.get(f"{base}/v1/buckets/{bucket}/documents") as r:
            docs = (await r.json())["data"]
        done = sum(1 for d in docs if d["status"] == "embedded") if wanted else 0
        total = max(len(wanted), 1)
        done = min(done, total) if status["status"] != "success" else total
        filled = BAR * done // total
        print(f"\r{bucket}: [{'#' * filled}{'.' * (BAR - filled)}] {done}/{len(wanted)} "
              f"documents  {time.monotonic() - started:5.1f} s", end="", flush=True)
        if status["status"] in ("success", "failure"):
            print()
            if status["status"] == "failure":
                print(f"switchboard: embedding failed: {status['reason']}", file=sys.stderr)
                return 1
            chunks = sum(d["chunks"] for d in docs)
            print(f"{bucket}: {len(docs)} documents, {chunks} chunks, searchable")
            return 0
        await asyncio.sleep(0.25)


def _fail(body: dict[str, Any]) -> int:
    print(f"switchboard: {body.get('error', {}).get('message', body)}", file=sys.stderr)
    return 1
