"""Embedding throughput in process (no HTTP): Switchboard's all-MiniLM-L6-v2 (ONNX Runtime)
and, where sentence-transformers is installed, sentence-transformers on torch, side by side:
the same texts (256-token chunks, short sentences), the same thread count (ONNX Runtime's
threads, torch's threads), each in its own process, alternated round by round. Text in, unit
vectors out: tokenization is in the time of both.

    python bench/embeddings.py [--threads 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

from common import Result, bench_parser, run_benchmark

CHUNKS, SENTENCES, BATCH = 64, 512, 32
Encode = Callable[[list[str]], np.ndarray]  # texts → unit vectors
_encode: Encode | None = None  # the worker process's model


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for each (2)")
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds (5)")
    run_benchmark(parser, measure)


def workloads() -> dict[str, list[str]]:
    """64 texts cut at 256 tokens, and 512 sentences of about 14 tokens."""
    words = "retrieval augmented generation grounds answers in documents " * 60
    return {"chunks_256_tokens": [f"{i} {words}" for i in range(CHUNKS)],
            "short_sentences": [f"Sentence number {i} about embeddings on a CPU."
                                for i in range(SENTENCES)]}


def _switchboard(threads: int) -> Encode:
    from switchboard.retrieval import SentenceEncoder

    encoder = SentenceEncoder(threads=threads)
    assert all(len(ids) == 256 for ids in encoder.tokenize(workloads()["chunks_256_tokens"]))

    def encode(texts: list[str]) -> np.ndarray:
        return encoder.encode(encoder.tokenize(texts))
    return encode


def _sentence_transformers(threads: int) -> Encode:
    import torch
    from sentence_transformers import SentenceTransformer

    from switchboard.retrieval.encoder import model_dir

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(model_dir()), device="cpu")

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=BATCH, normalize_embeddings=True,
                            convert_to_numpy=True)
    return encode


def _load(contender: str, threads: int) -> None:
    global _encode
    _encode = (_switchboard if contender == "switchboard" else _sentence_transformers)(threads)
    for texts in workloads().values():
        _encode(texts[:8])  # warm up


def _round(name: str) -> tuple[float, np.ndarray]:
    """Inputs per second over one workload, and its vectors."""
    assert _encode is not None
    texts = workloads()[name]
    started = time.perf_counter()
    vectors = _encode(texts)
    return len(texts) / (time.perf_counter() - started), np.asarray(vectors, dtype=np.float32)


def contenders() -> list[str]:
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        return ["switchboard"]
    return ["switchboard", "sentence-transformers"]


def measure(args: argparse.Namespace) -> Result:
    names = contenders()
    # a worker that fails to load breaks its pool (BrokenProcessPool) instead of respawning
    pools = {name: ProcessPoolExecutor(1, get_context("spawn"), initializer=_load,
                                       initargs=(name, args.threads)) for name in names}
    rates: dict[str, dict[str, list[float]]] = {n: {w: [] for w in workloads()} for n in names}
    vectors: dict[str, dict[str, np.ndarray]] = {n: {} for n in names}
    try:
        for _ in range(args.rounds):
            for workload in workloads():
                for name in names:
                    rate, vectors[name][workload] = pools[name].submit(_round, workload).result()
                    rates[name][workload].append(rate)
    finally:
        for pool in pools.values():
            pool.shutdown(cancel_futures=True)
    result: Result = {"threads": args.threads, "rounds": args.rounds}
    print(f"{args.threads} threads, {args.rounds} alternated rounds, median (min-max) inputs/s")
    for workload in workloads():
        for name in names:
            runs = rates[name][workload]
            result[f"{name}_{workload}_per_s"] = statistics.median(runs)
            print(f"  {workload:18s} {name:22s} {statistics.median(runs):8.1f} "
                  f"({min(runs):.1f}-{max(runs):.1f})")
        if len(names) == 2:
            ratio = (statistics.median(rates[names[0]][workload])
                     / statistics.median(rates[names[1]][workload]))
            a, b = vectors[names[0]][workload], vectors[names[1]][workload]
            cosine = float((a * b).sum(1).min())
            result[f"{workload}_ratio"] = ratio
            result[f"{workload}_min_cosine"] = cosine
            print(f"  {workload:18s} switchboard / sentence-transformers: {ratio:.2f}x, "
                  f"min cosine {cosine:.6f}")
    return result


if __name__ == "__main__":
    main()
