"""Decode throughput of the engine alone (no HTTP): N sequences of 128 tokens at once.

    python bench/engine_only.py [--sequences 16] [--rounds 4] [--weights q8_0|original]

Separates what llama.cpp and the scheduler deliver from what the server and client cost.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, "src")
from switchboard.engine import (  # noqa: E402
    Engine,
    EngineConfig,
    GenerationRequest,
    LlamaModel,
    SamplingParams,
    StepOutput,
)
from switchboard.engine.embedded import embedded_model_path  # noqa: E402
from switchboard.engine.weights import prepare_weights  # noqa: E402


def round_rates(path: Path, sequences: int, rounds: int, flash_attn: bool = True) -> Iterator[float]:
    """Output tok/s of each round of ``sequences`` sequences of 128 tokens started together."""
    config = EngineConfig(max_sequences=sequences, cache_slots=0)
    model = LlamaModel(path, 8192, config.sequence_ids, 2, flash_attn=flash_attn)
    engine = Engine(model, config)
    prompt = model.tokenize("<|im_start|>user\nTell a story about a dragon.<|im_end|>\n"
                            "<|im_start|>assistant\n")
    try:
        for r in range(rounds):
            done = threading.Semaphore(0)

            def sink(out: StepOutput, done: threading.Semaphore = done) -> None:
                if out.finished:
                    done.release()

            started = time.monotonic()
            for i in range(sequences):
                params = SamplingParams(temperature=0.7, seed=i, max_tokens=128, ignore_eos=True)
                engine.submit(GenerationRequest(tuple(prompt + [1000 * r + i + 10]), params), sink)
            for _ in range(sequences):
                done.acquire()
            yield sequences * 128 / (time.monotonic() - started)
    finally:
        engine.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequences", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--weights", choices=["q8_0", "original"], default="q8_0")
    args = parser.parse_args()
    path = prepare_weights(
        embedded_model_path(), args.weights, Path.home() / ".cache" / "switchboard", threads=2
    )
    rates = round_rates(path, args.sequences, args.rounds, flash_attn=args.weights == "q8_0")
    for r, rate in enumerate(rates):
        print(f"round {r + 1}: {rate:.1f} tok/s with {args.sequences} sequences", flush=True)


if __name__ == "__main__":
    main()
