"""The sampler's cost per engine step: 16 rows of the model's vocabulary size, each set of
sampling parameters drawn as one batch, as a step of 16 sampled streams draws them.

    python bench/sampler.py [--rounds 50]

Rows are synthetic scores (normal, scale 3) over SmolLM2's 49,152 tokens; the figure is
milliseconds per batch of 16 draws, the median of ``--rounds``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from common import Result, bench_parser, run_benchmark
from switchboard.engine.request import SamplingParams
from switchboard.engine.sampler import Sampler, SequenceSampling

VOCAB = 49_152
ROWS = 16
SETTINGS = {
    "temperature 1": SamplingParams(temperature=1.0),
    "llama.cpp defaults (0.8, top_p 0.95, top_k 40, min_p 0.05)": SamplingParams(
        temperature=0.8, top_p=0.95, top_k=40, min_p=0.05),
    "top_p 0.9": SamplingParams(temperature=0.7, top_p=0.9),
    "top_k 50": SamplingParams(temperature=0.7, top_k=50),
    "min_p 0.1": SamplingParams(temperature=0.7, min_p=0.1),
    "greedy": SamplingParams(temperature=0.0),
}


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=50)
    run_benchmark(parser, measure)


def measure(args: argparse.Namespace) -> Result:
    sampler = Sampler(VOCAB, [0, 2])
    scores = (np.random.default_rng(0).standard_normal((ROWS, VOCAB)) * 3).astype(np.float32)
    print("| parameters | ms per 16 rows |")
    print("|---|---|")
    result: Result = {}
    for name, params in SETTINGS.items():
        seqs = [SequenceSampling(params, np.random.default_rng(i), VOCAB) for i in range(ROWS)]
        times = []
        for _ in range(args.rounds):
            batch = scores.copy()
            t0 = time.perf_counter()
            sampler.sample(batch, seqs)
            times.append(time.perf_counter() - t0)
        ms = statistics.median(times) * 1000
        print(f"| {name} | {ms:.2f} |", flush=True)
        result[name] = round(ms, 3)
    return result


if __name__ == "__main__":
    main()
