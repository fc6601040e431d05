"""The kernel probe: its verdict is what llama.cpp's default weight buffers really do here."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

from switchboard.engine import LlamaModel
from switchboard.engine.embedded import embedded_model_path
from switchboard.engine.kernel_probe import extra_buffers_run

# llama-cpp-python's own high-level API with its defaults (extra buffers on): one batched decode.
WITNESS = textwrap.dedent(
    """
    import sys
    from llama_cpp import Llama
    llm = Llama(sys.argv[1], n_ctx=256, n_threads=1, verbose=False)
    llm.eval(list(range(1, 9)))
    """
)


def test_probe_verdict_matches_a_batched_decode_with_llama_cpp_defaults() -> None:
    path = embedded_model_path()
    witness = subprocess.run(
        [sys.executable, "-c", WITNESS, str(path)], capture_output=True, timeout=120, check=False
    )
    assert extra_buffers_run(path) == (witness.returncode == 0), witness.stderr[-500:]


def test_a_model_loaded_with_the_probed_default_decodes_batches() -> None:
    model = LlamaModel(embedded_model_path(), n_ctx=256, n_seq_max=2, n_threads=1)
    try:
        n = 8
        logits = model.decode(
            np.arange(1, n + 1, dtype=np.int32),
            np.arange(n, dtype=np.int32),
            np.zeros(n, dtype=np.int32),
            np.ones(n, dtype=np.int8),
        )
        assert logits.shape == (n, model.n_vocab)
        assert np.isfinite(logits).all()
    finally:
        model.close()
