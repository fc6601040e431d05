"""Weight format: serve a GGUF as shipped, or requantized once into a cache directory.

Q8_0 decodes many sequences faster than the shipped Q4_1 and reads prompts faster, at the same
perplexity (docs, Performance: "Weight format"). Conversion runs llama.cpp's own
quantizer the first time a model is loaded, shows progress, and is reused afterwards.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Literal

import llama_cpp

from switchboard.engine import model as model_module

log = logging.getLogger(__name__)

WeightFormat = Literal["q8_0", "original"]
_FTYPES = {"q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0}


def file_type(path: Path) -> int | None:
    """The GGUF's ``general.file_type`` (llama_ftype), read without loading the tensors."""
    model_module.init_backend()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    handle = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not handle:
        return None
    try:
        buf = ctypes.create_string_buffer(32)
        n = llama_cpp.llama_model_meta_val_str(handle, b"general.file_type", buf, len(buf))
        return int(buf.value) if n > 0 else None
    finally:
        llama_cpp.llama_model_free(handle)


def prepare_weights(path: Path, weights: WeightFormat, cache_dir: Path, threads: int) -> Path:
    """The file to load: ``path`` itself, or its cached conversion to ``weights``."""
    if weights == "original" or not path.is_file():
        return path
    target = _FTYPES[weights]
    if file_type(path) == target:
        return path
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    out = cache_dir / f"{path.stem}.{key.hexdigest()[:12]}.{weights.upper()}.gguf"
    if out.is_file():
        return out
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(f".partial-{os.getpid()}")
    log.info("converting %s to %s once, into %s", path.name, weights.upper(), cache_dir)
    started = time.monotonic()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = target
    params.allow_requantize = True
    params.nthread = threads
    with model_module.quantize_progress(lambda done, total: log.info(
        "converting %s: %d/%d tensors", path.name, done, total
    )):
        status = llama_cpp.llama_model_quantize(
            str(path).encode(), str(partial).encode(), ctypes.byref(params)
        )
    if status != 0:
        partial.unlink(missing_ok=True)
        log.warning("conversion to %s failed (%d); serving the original file", weights, status)
        return path
    partial.replace(out)
    log.info("converted %s in %.1f s", out.name, time.monotonic() - started)
    return out
