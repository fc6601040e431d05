"""What other sequences' KV cells cost a decode step in llama.cpp's unified KV cache.

    python bench/kv_scan.py [--weights q8_0|original]

With ``--kv-layout unified`` the engine keeps every sequence in one pool of KV cells, which lets
the prefix cache share cells without copying them, but each token's attention then walks every
used cell, masked or not; the default layout gives each sequence a stream of its own. Part 1
decodes one sequence, then 16, while cells of another sequence pile up (in one pool: what
finished sequences kept by the prefix cache cost). Part 2 decodes 16 sequences of 150 tokens in
one unified pool and with a KV stream per sequence (llama.cpp's ``kv_unified = false``, what
``llama-server -np 16`` and the engine by default use), each in a fresh process. Part 3 decodes
1 and 16 sequences with a stream each at growing contexts, with and without llama.cpp's flash
attention. Times are the best of 3 x 15 steps.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from common import Result, bench_parser, isolated, run_benchmark
from switchboard.engine import LlamaModel
from switchboard.engine.embedded import embedded_model_path
from switchboard.engine.weights import prepare_weights


def fill(model: LlamaModel, seq: int, start: int, n: int) -> None:
    """Prefill ``n`` cells of ``seq`` from position ``start`` (no logits)."""
    for at in range(start, start + n, 256):
        k = min(256, start + n - at)
        model.decode(np.full(k, 300, np.int32), np.arange(at, at + k, dtype=np.int32),
                     np.full(k, seq, np.int32), np.zeros(k, np.int8))


def step_ms(model: LlamaModel, batch: int, at: int) -> float:
    """Best of 3 x 15 decode steps of sequences 0..batch-1 at position ``at``."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for i in range(15):
            model.decode(np.full(batch, 300, np.int32), np.full(batch, at + i, np.int32),
                         np.arange(batch, dtype=np.int32), np.ones(batch, np.int8))
        best = min(best, (time.perf_counter() - started) / 15)
        for seq in range(batch):
            model.forget(seq, at)
    return 1000 * best


def foreign_cells(path: Path) -> Result:
    model = LlamaModel(path, 8192, 18, 2, flash_attn=True)
    started = time.perf_counter()
    for seq in range(16):
        fill(model, seq, 0, 150)
    print(f"prefill: {1000 * (time.perf_counter() - started) / (16 * 150):.2f} ms per token "
          "(what a reused cached cell saves)")
    print("| other cells | 1 sequence decodes | 16 sequences decode |")
    print("|---|---|---|")
    held = 0
    rows = []
    for extra in (0, 2000, 5000):
        fill(model, 17, held, extra - held)
        held = extra
        rows.append((step_ms(model, 1, 150), step_ms(model, 16, 150)))
        print(f"| {extra} | {rows[-1][0]:.1f} ms | {rows[-1][1]:.1f} ms |", flush=True)
    model.close()
    per_cell = [(rows[-1][i] - rows[0][i]) * 1000 / 5000 / batch for i, batch in enumerate((1, 16))]
    print(f"each other cell: {per_cell[0]:.2f} µs per decoded token with 1 sequence decoding, "
          f"{per_cell[1]:.2f} µs with 16")
    return {"step_ms_by_other_cells": {str(extra): {"1": one, "16": many}
                                       for extra, (one, many) in zip((0, 2000, 5000), rows)},
            "other_cell_us_per_token": {"1": per_cell[0], "16": per_cell[1]}}


def streams(path: Path, unified: bool) -> float:
    model = LlamaModel(path, 16 * 512, 16, 2, flash_attn=True, unified_kv=unified)
    for seq in range(16):
        fill(model, seq, 0, 150)
    result = step_ms(model, 16, 150)
    model.close()
    return result


def flash_attention_by_context(path: Path, flash_attn: bool
                               ) -> tuple[list[tuple[float, float]], float]:
    """(1 sequence, 16 sequences) ms per step at 128, 512, 1024 and 1536 tokens of context, and
    the ms per token spent filling those contexts (prefill in 256-token chunks)."""
    model = LlamaModel(path, 16 * 2048, 16, 2, flash_attn=flash_attn, unified_kv=False)
    held = 0
    rows = []
    filling = 0.0
    for context in CONTEXTS:
        started = time.perf_counter()
        for seq in range(16):
            fill(model, seq, held, context - held)
        filling += time.perf_counter() - started
        held = context
        rows.append((step_ms(model, 1, context), step_ms(model, 16, context)))
    model.close()
    return rows, 1000 * filling / (16 * held)


CONTEXTS = (128, 512, 1024, 1536)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--weights", choices=["q8_0", "original"], default="q8_0")
    run_benchmark(parser, measure)


def measure(args: argparse.Namespace) -> Result:
    path = prepare_weights(
        embedded_model_path(), args.weights, Path.home() / ".cache" / "switchboard", threads=2
    )
    print("Part 1: 16 sequences of 150 tokens, plus cells of another sequence")
    result: Result = {"part1": foreign_cells(path), "part2": [], "part3": {}}
    print("\nPart 2: 16 sequences of 150 tokens decoding, per step")
    for unified in (True, False, True, False):
        ms = isolated(streams, path, unified)
        name = "one unified pool" if unified else "a stream per sequence"
        print(f"{name}: {ms:.1f} ms", flush=True)
        result["part2"].append({"layout": "unified" if unified else "per-sequence",
                                "step_ms": ms})
    print("\nPart 3: a stream per sequence, ms per decode step by context (1 / 16 sequences)")
    print("| flash attention | " + " | ".join(f"{c} tokens" for c in CONTEXTS)
          + " | prefill to 1536, ms per token |")
    print("|---|" + "---|" * (len(CONTEXTS) + 1))
    for flash_attn in (True, False):
        rows, prefill = isolated(flash_attention_by_context, path, flash_attn)
        cells = " | ".join(f"{one:.1f} / {many:.0f}" for one, many in rows)
        print(f"| {'on' if flash_attn else 'off'} | {cells} | {prefill:.2f} |", flush=True)
        result["part3"]["flash_attn_on" if flash_attn else "flash_attn_off"] = {
            "step_ms_by_context": {str(c): {"1": one, "16": many}
                                   for c, (one, many) in zip(CONTEXTS, rows)},
            "prefill_ms_per_token": prefill,
        }
    return result

if __name__ == "__main__":
    main()
