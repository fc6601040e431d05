"""Whether llama.cpp's optional CPU weight layouts (AMX, repacked) run on this machine.

llama.cpp built for a CPU that advertises AMX puts matmul weights in AMX buffers. Some virtual
machines advertise AMX in CPUID but never enable its tile state, and the first batched matmul
then kills the process with SIGILL. A child process tries one batched decode with those buffers,
so the server itself never does; where the child dies, the model is loaded with llama.cpp's
generic CPU buffers instead (``use_extra_bufts = false``).

Run as ``python -m switchboard.engine.kernel_probe MODEL.gguf`` it is that child.
"""

from __future__ import annotations

import functools
import logging
import subprocess
import sys
from pathlib import Path

import llama_cpp

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 120.0


def amx_compiled() -> bool:
    """Whether this llama.cpp build carries AMX kernels (the only extra layout seen to crash)."""
    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


@functools.cache
def extra_buffers_run(path: Path) -> bool:
    """True where a batched decode of ``path`` with llama.cpp's extra buffers survives.

    Without AMX kernels in the build nothing is probed. The answer is kept for the process.
    """
    if not amx_compiled():
        return True
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
        return False
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
