"""Decode throughput of the engine alone (no HTTP): N sequences of 128 tokens at once.

    python bench/engine_only.py [--sequences 16] [--rounds 4] [--weights q8_0|original]

Separates what llama.cpp and the scheduler deliver from what the server and client cost.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequences", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--weights", choices=["q8_0", "original"], default="q8_0")
    args = parser.parse_args()
    path = prepare_weights(
        embedded_model_path(), args.weights, Path.home() / ".cache" / "switchboard", threads=2
    )
    config = EngineConfig(max_sequences=args.sequences, cache_slots=0)
    model = LlamaModel(path, 8192, config.sequence_ids, 2, flash_attn=args.weights == "q8_0")
    engine = Engine(model, config)
    prompt = model.tokenize("<|im_start|>user\nTell a story about a dragon.<|im_end|>\n"
                            "<|im_start|>assistant\n")
    for r in range(args.rounds):
        done = threading.Semaphore(0)

        def sink(out: StepOutput, done: threading.Semaphore = done) -> None:
            if out.finished:
                done.release()

        started = time.monotonic()
        for i in range(args.sequences):
            params = SamplingParams(temperature=0.7, seed=i, max_tokens=128, ignore_eos=True)
            engine.submit(GenerationRequest(tuple(prompt + [1000 * r + i + 10]), params), sink)
        for _ in range(args.sequences):
            done.acquire()
        rate = args.sequences * 128 / (time.monotonic() - started)
        print(f"round {r + 1}: {rate:.1f} tok/s with {args.sequences} sequences", flush=True)
    engine.shutdown()


if __name__ == "__main__":
    main()
