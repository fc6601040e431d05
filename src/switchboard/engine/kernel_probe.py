"""Whether llama.cpp's optional CPU weight layouts (AMX, repacked) run on this machine.

llama.cpp built for a CPU that advertises AMX puts matmul weights in AMX buffers. Some virtual
machines advertise AMX in CPUID but never enable its tile state, and the first batched matmul then
kills the process with SIGILL. A child process tries one batched decode with those buffers, so the
server itself never does; where the child dies, the model is loaded with llama.cpp's generic CPU
buffers instead (``use_extra_bufts = false``).

Given a cache directory (the one converted weights are kept in), the verdict is kept there, keyed
by the machine (``machine_verdicts``) and the model file (path, size, modification time), so later
starts on the same machine skip the child. Only a verdict the child gave is kept: a probe that
could not run or timed out is tried again next time.

Run as ``python -m switchboard.engine.kernel_probe MODEL.gguf`` it is that child.
"""

from __future__ import annotations

import functools
import logging
import subprocess
import sys
from pathlib import Path

import llama_cpp

from switchboard.engine.machine_verdicts import (
    file_identity,
    keep_verdict,
    read_verdict,
    verdict_path,
)

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 120.0


def amx_compiled() -> bool:
    """Whether this llama.cpp build carries AMX kernels (the only extra layout seen to crash)."""
    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


def _verdict_file(path: Path, cache_dir: Path) -> Path:
    return verdict_path("kernel-probe", [file_identity(path)], cache_dir)


def _cached_verdict(path: Path, cache_dir: Path | None) -> bool | None:
    if cache_dir is None:
        return None
    verdict = (read_verdict(_verdict_file(path, cache_dir)) or {}).get("extra_buffers_run")
    return verdict if isinstance(verdict, bool) else None


def _keep_verdict(path: Path, cache_dir: Path | None, verdict: bool) -> None:
    if cache_dir is not None:
        keep_verdict(_verdict_file(path, cache_dir),
                     {"extra_buffers_run": verdict, "model": str(path)})


@functools.cache
def extra_buffers_run(path: Path, cache_dir: Path | None = None) -> bool:
    """True where a batched decode of ``path`` with llama.cpp's extra buffers survives.

    Without AMX kernels in the build nothing is probed. The answer is kept for the process, and
    in ``cache_dir`` (when given) for later processes on the same machine.
    """
    if not amx_compiled():
        return True
    cached = _cached_verdict(path, cache_dir)
    if cached is not None:
        log.info("llama.cpp's AMX kernels %s on this CPU (verdict kept in %s)",
                 "run" if cached else "fail", cache_dir)
        return cached
    verdict = _run_probe(path)
    if verdict is not None:
        _keep_verdict(path, cache_dir, verdict)
    return bool(verdict)


def _run_probe(path: Path) -> bool | None:
    """The child's verdict, or ``None`` where it gave none (could not start, timed out)."""
    try:
        child = subprocess.run(
            [sys.executable, "-m", __name__, str(path)],
            capture_output=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except (subprocess.TimeoutExpired, OSError) as exc:  # OSError: no Python to start
        log.warning("llama.cpp's AMX kernel probe could not run (%s); using its generic CPU "
                    "kernels", exc)
        return None
    if child.returncode != 0:
        log.warning(
            "llama.cpp's AMX kernels fail on this CPU (probe exit status %d: AMX advertised but "
            "not enabled?); using its generic CPU kernels", child.returncode,
        )
        return False
    return True


def _probe(path: Path) -> None:
    """Decode a batch of several tokens with the extra buffers (AMX tiles serve batches > 1)."""
    import numpy as np

    from switchboard.engine.model import LlamaModel

    model = LlamaModel(path, n_ctx=256, n_seq_max=1, n_threads=1, extra_buffers=True)
    try:
        n = 8
        model.decode(
            np.arange(1, n + 1, dtype=np.int32),
            np.arange(n, dtype=np.int32),
            np.zeros(n, dtype=np.int32),
            np.ones(n, dtype=np.int8),
        )
    finally:
        model.close()


if __name__ == "__main__":
    _probe(Path(sys.argv[1]))
