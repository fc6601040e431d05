"""Perplexity of the embedded model per weight format, on text found on any Python install.

    python bench/perplexity.py [--chunks 20] [--ctx 512]

Evaluates the second half of each ``--ctx``-token window (as llama.cpp's ``llama-perplexity``
does) over English prose taken from the standard library's module docstrings.
"""

from __future__ import annotations

import argparse
import ast
import math
import sysconfig
from pathlib import Path

import numpy as np

from common import Result, bench_parser, run_benchmark
from switchboard.engine.embedded import embedded_model_path
from switchboard.engine.model import LlamaModel
from switchboard.engine.sampler import log_softmax
from switchboard.engine.weights import prepare_weights


def corpus() -> str:
    texts = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        except (SyntaxError, UnicodeDecodeError):
            continue
        if doc and len(doc) > 400:
            texts.append(doc)
    return "\n\n".join(texts)


def perplexity(model: LlamaModel, tokens: list[int], chunks: int, ctx: int) -> float:
    nll, count = 0.0, 0
    for c in range(chunks):
        window = np.asarray(tokens[c * ctx : (c + 1) * ctx], dtype=np.int32)
        if len(window) < ctx:
            break
        model.forget(0)
        logits = np.empty((0, model.n_vocab), dtype=np.float32)
        for start in range(0, ctx, model.n_batch):
            part = window[start : start + model.n_batch]
            rows = model.decode(
                part, np.arange(start, start + len(part), dtype=np.int32),
                np.zeros(len(part), dtype=np.int32), np.ones(len(part), dtype=np.int8),
            )
            logits = np.vstack([logits, rows])
        lp = log_softmax(logits[ctx // 2 : ctx - 1])
        targets = window[ctx // 2 + 1 :]
        nll -= float(lp[np.arange(len(targets)), targets].sum())
        count += len(targets)
    return math.exp(nll / count)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--ctx", type=int, default=512)
    run_benchmark(parser, measure)


def measure(args: argparse.Namespace) -> Result:
    result: Result = {"chunks": args.chunks, "ctx": args.ctx, "perplexity": {}}
    source = embedded_model_path()
    cache = Path.home() / ".cache" / "switchboard"
    text = corpus()
    for name in ("original", "q8_0"):
        path = prepare_weights(source, name, cache, threads=2)  # type: ignore[arg-type]
        model = LlamaModel(path, n_ctx=args.ctx, n_seq_max=1, n_threads=2)
        tokens = model.tokenize(text)
        ppl = perplexity(model, tokens, args.chunks, args.ctx)
        print(f"{name:9} ({path.name}): perplexity {ppl:.3f} "
              f"over {args.chunks} x {args.ctx} tokens")
        result["perplexity"][name] = ppl
        model.close()
    return result


if __name__ == "__main__":
    main()
