"""One engine forward step against llama.cpp's own driver, and the cost of KV prefix copies.

    python bench/decode_step.py [--sequences 16] [--rounds 3] [--llama-batched-bench PATH]
    python bench/decode_step.py --copies

Decode steps: ``--sequences`` sequences each read a 32-token prompt, then take 128 one-token
steps together through ``LlamaModel`` (logits copied out, no sampling), in the server's default
setup: Q8_0, a KV stream per sequence, no flash attention. With ``--llama-batched-bench`` (the
binary built from the llama.cpp that llama-cpp-python vendors, see README *Performance*) llama.cpp's
own driver runs the same shape (``-npp 32 -ntg 128 -npl N -no-kvu -fa off --no-repack``) in
alternate rounds: the VM's speed drifts within minutes, so only neighbouring rounds compare.

Copies (``--copies``): a 27-token prefix copied into 8 other streams, as a burst of requests with
one system prompt gets it, cell by cell (``LlamaModel.share``) against llama.cpp's whole-stream
copy, each timed with the one-token decode that follows it, less a plain one.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import time
from pathlib import Path

import llama_cpp
import numpy as np

from common import Result, bench_parser, run_benchmark
from switchboard.engine import LlamaModel
from switchboard.engine.embedded import embedded_model_path
from switchboard.engine.weights import prepare_weights

PROMPT, STEPS = 32, 128


def engine_step_ms(model: LlamaModel, sequences: int, rng: np.random.Generator) -> float:
    """Median ms of a one-token step of ``sequences`` sequences."""
    for seq in range(sequences):
        model.forget(seq)
    want = np.zeros(PROMPT, dtype=np.int8)
    want[-1] = 1
    for seq in range(sequences):  # prompts alone: only the steps are compared
        model.decode(rng.integers(100, 20000, PROMPT).astype(np.int32),
                     np.arange(PROMPT, dtype=np.int32), np.full(PROMPT, seq, np.int32), want)
    ids = np.arange(sequences, dtype=np.int32)
    times = []
    for step in range(STEPS):
        tokens = rng.integers(100, 20000, sequences).astype(np.int32)
        started = time.perf_counter()
        model.decode(tokens, np.full(sequences, PROMPT + step, np.int32), ids,
                     np.ones(sequences, np.int8))
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times))


def llama_cpp_step_ms(binary: str, path: Path, sequences: int) -> float:
    """ms per decode step from ``llama-batched-bench``'s text-generation time."""
    out = subprocess.run(
        [binary, "-m", str(path), "-t", "2", "-c", str(2048 * sequences), "-b", "512",
         "-ub", "512", "-npp", str(PROMPT), "-ntg", str(STEPS), "-npl", str(sequences),
         "--no-repack", "-fa", "off", "-no-kvu"],
        capture_output=True, text=True, check=True,
        env={**os.environ, "LD_LIBRARY_PATH": str(Path(binary).resolve().parent)},
    ).stdout
    row = re.search(rf"^\|\s+{PROMPT}\s+\|\s+{STEPS}\s+\|\s+{sequences}\s+\|(.*)$", out, re.M)
    if row is None:
        raise SystemExit(f"no result row in llama-batched-bench's output:\n{out}")
    t_tg = float(row.group(1).split("|")[3])  # N_KV, T_PP s, S_PP t/s, T_TG s, ...
    return 1000 * t_tg / STEPS


def copies_ms(model: LlamaModel, rng: np.random.Generator, whole_stream: bool) -> float:
    """ms that 8 copies of a 27-token prefix add to the decode after them."""
    n, copies = 27, range(1, 9)
    for seq in range(9):
        model.forget(seq)
    tokens = rng.integers(100, 20000, n + 1).astype(np.int32)
    model.decode(tokens[:n], np.arange(n, dtype=np.int32), np.zeros(n, np.int32),
                 np.zeros(n, np.int8))

    def one_token(seq: int) -> float:
        started = time.perf_counter()
        model.decode(tokens[n:], np.array([n], np.int32), np.array([seq], np.int32),
                     np.ones(1, np.int8))
        return time.perf_counter() - started

    plain = one_token(0)
    model.forget(0, n)
    started = time.perf_counter()
    for dst in copies:
        if whole_stream:  # what llama.cpp offers between streams (the engine's fallback)
            memory = llama_cpp.llama_get_memory(model._ctx)
            llama_cpp.llama_memory_seq_cp(memory, 0, dst, -1, -1)
        else:
            model.share(0, dst, n)
    copied = time.perf_counter() - started
    return 1000 * (copied + one_token(1) - plain)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--sequences", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--llama-batched-bench", metavar="BINARY")
    parser.add_argument("--copies", action="store_true", help="time prefix copies instead")
    run_benchmark(parser, measure)


def measure(args: argparse.Namespace) -> Result:
    path = prepare_weights(embedded_model_path(), "q8_0", Path.home() / ".cache" / "switchboard",
                           threads=2)
    model = LlamaModel(path, n_ctx=2048 * max(args.sequences, 9),
                       n_seq_max=max(args.sequences, 9), n_threads=2, unified_kv=False)
    rng = np.random.default_rng(0)
    rounds: list[dict[str, float]] = []
    for r in range(1, args.rounds + 1):
        if args.copies:
            cells, whole = copies_ms(model, rng, False), copies_ms(model, rng, True)
            print(f"round {r}: 8 copies of 27 cells: {cells:.1f} ms cell by cell, "
                  f"{whole:.1f} ms as whole streams", flush=True)
            rounds.append({"copies_cell_by_cell_ms": cells, "copies_whole_streams_ms": whole})
            continue
        ours = engine_step_ms(model, args.sequences, rng)
        line = f"round {r}: {args.sequences} sequences, Switchboard's LlamaModel " \
               f"{ours:.1f} ms a step"
        figures = {"llamamodel_step_ms": ours}
        if args.llama_batched_bench:
            theirs = llama_cpp_step_ms(args.llama_batched_bench, path, args.sequences)
            line += f", llama-batched-bench {theirs:.1f} ms"
            figures["llama_batched_bench_step_ms"] = theirs
        print(line, flush=True)
        rounds.append(figures)
    model.close()
    return {"sequences": args.sequences, "rounds": rounds}


if __name__ == "__main__":
    main()
