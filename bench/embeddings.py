"""Embedding throughput of the NumPy all-MiniLM-L6-v2: 256-token chunks in batches of 32, and
short sentences, in-process (no HTTP).

    python bench/embeddings.py
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import Result, bench_parser, run_benchmark
from switchboard.retrieval import SentenceEncoder


def rate(encoder: SentenceEncoder, ids: list[list[int]], rounds: int = 3) -> float:
    encoder.encode(ids[:4])  # warm up
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        encoder.encode(ids)
        times.append(time.perf_counter() - started)
    return len(ids) / statistics.median(times)


def main() -> None:
    run_benchmark(bench_parser(__doc__), measure)


def measure(args: argparse.Namespace) -> Result:
    encoder = SentenceEncoder(batch_size=32)
    words = "retrieval augmented generation grounds answers in documents " * 60
    chunks = encoder.tokenize([f"{i} {words}" for i in range(64)])
    assert all(len(c) == 256 for c in chunks)
    sentences = encoder.tokenize([f"Sentence number {i} about embeddings on a CPU."
                                  for i in range(512)])
    chunk_rate, sentence_rate = rate(encoder, chunks), rate(encoder, sentences)
    print(f"256-token chunks, batch 32: {chunk_rate:.1f} chunks/s")
    print(f"short sentences (~14 tokens): {sentence_rate:.0f} sentences/s")
    return {"chunks_256_tokens_per_s": chunk_rate, "short_sentences_per_s": sentence_rate}


if __name__ == "__main__":
    main()
