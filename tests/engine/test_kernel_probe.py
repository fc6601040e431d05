"""The kernel probe: its verdict is what llama.cpp's default weight buffers really do here, and
it is kept per machine and model in the cache directory."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from switchboard.engine import LlamaModel, kernel_probe, machine_verdicts
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


def test_the_verdict_is_kept_per_machine_and_model(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A later process on the same machine reads the verdict instead of starting the child; another
    CPU, llama.cpp build or model file probes again; a probe that gave no verdict is not kept."""
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    cache = tmp_path / "cache"
    children: list[list[str]] = []
    outcome: dict[str, object] = {"returncode": -4}  # SIGILL

    def child(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        children.append(args)
        if outcome.get("timeout"):
            raise subprocess.TimeoutExpired(args, 1.0)
        return subprocess.CompletedProcess(args, int(outcome["returncode"]), b"", b"")

    def fresh_process() -> None:
        kernel_probe.extra_buffers_run.cache_clear()

    monkeypatch.setattr(kernel_probe, "amx_compiled", lambda: True)
    monkeypatch.setattr(kernel_probe.subprocess, "run", child)
    monkeypatch.setattr(machine_verdicts, "machine_identity", lambda: "cpu A")
    try:
        fresh_process()
        assert kernel_probe.extra_buffers_run(model, cache) is False and len(children) == 1
        fresh_process()
        assert kernel_probe.extra_buffers_run(model, cache) is False and len(children) == 1
        assert [p.suffix for p in cache.iterdir()] == [".json"]

        monkeypatch.setattr(machine_verdicts, "machine_identity", lambda: "cpu B")
        outcome["returncode"] = 0
        fresh_process()
        assert kernel_probe.extra_buffers_run(model, cache) is True and len(children) == 2
        fresh_process()
        assert kernel_probe.extra_buffers_run(model, cache) is True and len(children) == 2

        model.write_bytes(b"GGUF, another file")  # a new model file: probed again
        outcome["timeout"] = True
        fresh_process()
        assert kernel_probe.extra_buffers_run(model, cache) is False and len(children) == 3
        fresh_process()
        assert kernel_probe.extra_buffers_run(model, cache) is False and len(children) == 4

        fresh_process()  # without a cache directory every process probes
        outcome.pop("timeout")
        kernel_probe.extra_buffers_run(model)
        kernel_probe.extra_buffers_run.cache_clear()
        kernel_probe.extra_buffers_run(model)
        assert len(children) == 6
    finally:
        fresh_process()
