"""Decode throughput of the engine alone (no HTTP): N sequences of 128 tokens at once.

    python bench/engine_only.py [--sequences 16] [--rounds 4] [--weights q8_0|original]
                                [--kv-layout per-sequence|unified]

Separates what llama.cpp and the scheduler deliver from what the server and client cost, and
within the engine what ``llama_decode`` takes from what the Python around it (scheduling,
sampling, detokenizing) takes.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import Result, bench_parser, run_benchmark
from switchboard.engine import (
    Engine,
    EngineConfig,
    GenerationRequest,
    LlamaModel,
    SamplingParams,
    StepOutput,
)
from switchboard.engine.embedded import embedded_model_path
from switchboard.engine.weights import prepare_weights


@dataclass
class Round:
    tok_s: float
    wall_s: float
    decode_s: float  # inside llama_decode
    passes: int  # forward passes

    @property
    def python_ms_per_pass(self) -> float:
        return 1000 * (self.wall_s - self.decode_s) / max(1, self.passes)


class TimedModel(LlamaModel):
    """Adds up the time spent in ``llama_decode`` (and the logits copy)."""

    decode_s = 0.0
    passes = 0

    def decode(self, tokens: np.ndarray, positions: np.ndarray, seq_ids: np.ndarray,
               want_logits: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        try:
            return super().decode(tokens, positions, seq_ids, want_logits)
        finally:
            self.decode_s += time.perf_counter() - started
            self.passes += 1


def rounds_of(path: Path, sequences: int, rounds: int, flash_attn: bool = True,
              streams: bool = True) -> Iterator[Round]:
    """Each round: ``sequences`` sequences of 128 tokens started together."""
    config = EngineConfig(max_sequences=sequences, cache_slots=0, kv_streams=streams)
    n_ctx = 2048 * sequences if streams else 8192  # the server's defaults
    model = TimedModel(path, n_ctx, config.sequence_ids, 2, flash_attn=flash_attn,
                       unified_kv=not streams)
    engine = Engine(model, config)
    prompt = model.tokenize("<|im_start|>user\nTell a story about a dragon.<|im_end|>\n"
                            "<|im_start|>assistant\n")
    try:
        for r in range(rounds):
            done = threading.Semaphore(0)

            def sink(out: StepOutput, done: threading.Semaphore = done) -> None:
                if out.finished:
                    done.release()

            decode_s, passes = model.decode_s, model.passes
            started = time.monotonic()
            for i in range(sequences):
                params = SamplingParams(temperature=0.7, seed=i, max_tokens=128, ignore_eos=True)
                engine.submit(GenerationRequest(tuple(prompt + [1000 * r + i + 10]), params), sink)
            for _ in range(sequences):
                done.acquire()
            wall = time.monotonic() - started
            yield Round(sequences * 128 / wall, wall, model.decode_s - decode_s,
                        model.passes - passes)
    finally:
        engine.shutdown()


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--sequences", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--weights", choices=["q8_0", "original"], default="q8_0")
    parser.add_argument("--kv-layout", choices=["per-sequence", "unified"],
                        default="per-sequence")
    run_benchmark(parser, measure)


def measure(args: argparse.Namespace) -> Result:
    path = prepare_weights(
        embedded_model_path(), args.weights, Path.home() / ".cache" / "switchboard", threads=2
    )
    streams = args.kv_layout == "per-sequence"
    flash_attn = not streams and args.weights == "q8_0"  # the server's defaults
    results = rounds_of(path, args.sequences, args.rounds, flash_attn=flash_attn, streams=streams)
    rounds = []
    for r, result in enumerate(results):
        print(f"round {r + 1}: {result.tok_s:.1f} tok/s with {args.sequences} sequences; "
              f"llama_decode {100 * result.decode_s / result.wall_s:.0f} % of the time, "
              f"Python {result.python_ms_per_pass:.2f} ms per forward pass", flush=True)
        rounds.append({"tok_s": result.tok_s, "llama_decode_share": result.decode_s / result.wall_s,
                       "python_ms_per_pass": result.python_ms_per_pass})
    return {"sequences": args.sequences, "weights": args.weights, "kv_layout": args.kv_layout,
            "rounds": rounds}


if __name__ == "__main__":
    main()
