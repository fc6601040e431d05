"""Speed and quality of the embedded model requantized to other llama.cpp formats.

    python bench/quant_formats.py [Q8_0 Q6_K Q4_K_M IQ4_NL Q4_0 ...]

Each format is made once with llama.cpp's quantizer (from the shipped Q4_1 file, into
``~/.cache/switchboard/formats``), then measured: perplexity as in ``bench/perplexity.py`` (20 x 512
tokens) and engine decode throughput with 16 and 1 sequences of 128 tokens, as in
``bench/engine_only.py``. ``original`` is the shipped file.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
from pathlib import Path

import llama_cpp

from common import Result, bench_parser, isolated, run_benchmark
from engine_only import rounds_of
from perplexity import corpus, perplexity
from switchboard.engine import LlamaModel
from switchboard.engine import model as model_module
from switchboard.engine.embedded import embedded_model_path

CACHE = Path.home() / ".cache" / "switchboard" / "formats"


def converted(source: Path, name: str) -> Path:
    if name == "original":
        return source
    out = CACHE / f"{source.stem}.{name}.gguf"
    if not out.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        model_module.init_backend()
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{name}")
        params.allow_requantize = True
        params.nthread = 2
        if llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(),
                                          ctypes.byref(params)) != 0:
            sys.exit(f"llama.cpp could not convert to {name}")
    return out


def decode_rate(path: Path, sequences: int) -> float:
    """Best of two rounds, as ``bench/engine_only.py`` measures them."""
    return max(r.tok_s for r in rounds_of(path, sequences, rounds=2))


def quality(path: Path, text: str) -> float:
    model = LlamaModel(path, n_ctx=512, n_seq_max=1, n_threads=2)
    try:
        return perplexity(model, model.tokenize(text), 20, 512)
    finally:
        model.close()


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("formats", nargs="*",
                        default=["original", "Q8_0", "Q6_K", "Q4_K_M", "IQ4_NL", "Q4_0"])
    run_benchmark(parser, measure)


def measure(args: argparse.Namespace) -> Result:
    formats = []
    source = embedded_model_path()
    text = corpus()
    print("| format | size | perplexity | decode tok/s, 16 sequences | 1 sequence |")
    print("|---|---|---|---|---|")
    for name in args.formats:
        path = converted(source, name)
        ppl = isolated(quality, path, text)
        batch, single = isolated(decode_rate, path, 16), isolated(decode_rate, path, 1)
        print(f"| {name} | {path.stat().st_size / 1e6:.1f} MB | {ppl:.3f} | {batch:.0f} | "
              f"{single:.0f} |", flush=True)
        formats.append({"format": name, "size_mb": path.stat().st_size / 1e6, "perplexity": ppl,
                        "decode_tok_s_16": batch, "decode_tok_s_1": single})
    return {"formats": formats}


if __name__ == "__main__":
    main()
