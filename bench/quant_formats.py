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
import threading
import time
from pathlib import Path

import llama_cpp

sys.path.insert(0, "src")
from perplexity import corpus, perplexity  # noqa: E402

from switchboard.engine import (  # noqa: E402
    Engine,
    EngineConfig,
    GenerationRequest,
    LlamaModel,
    SamplingParams,
    StepOutput,
)
from switchboard.engine import model as model_module  # noqa: E402
from switchboard.engine.embedded import embedded_model_path  # noqa: E402

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


def decode_rate(path: Path, sequences: int, rounds: int = 2) -> float:
    """Best of ``rounds``: output tok/s with ``sequences`` sequences of 128 tokens at once."""
    config = EngineConfig(max_sequences=sequences, cache_slots=0)
    model = LlamaModel(path, 8192, config.sequence_ids, 2, flash_attn=True)
    engine = Engine(model, config)
    prompt = model.tokenize("<|im_start|>user\nTell a story about a dragon.<|im_end|>\n"
                            "<|im_start|>assistant\n")
    best = 0.0
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
        best = max(best, sequences * 128 / (time.monotonic() - started))
    engine.shutdown()
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("formats", nargs="*",
                        default=["original", "Q8_0", "Q6_K", "Q4_K_M", "IQ4_NL", "Q4_0"])
    args = parser.parse_args()
    source = embedded_model_path()
    text = corpus()
    print("| format | size | perplexity | decode tok/s, 16 sequences | 1 sequence |")
    print("|---|---|---|---|---|")
    for name in args.formats:
        path = converted(source, name)
        model = LlamaModel(path, n_ctx=512, n_seq_max=1, n_threads=2)
        ppl = perplexity(model, model.tokenize(text), 20, 512)
        model.close()
        print(f"| {name} | {path.stat().st_size / 1e6:.1f} MB | {ppl:.3f} | "
              f"{decode_rate(path, 16):.0f} | {decode_rate(path, 1):.0f} |", flush=True)


if __name__ == "__main__":
    main()
