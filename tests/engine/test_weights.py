"""Requantization to Q8_0 at first load, cached and reused; --weights original untouched."""

from __future__ import annotations

from pathlib import Path

import llama_cpp
import pytest

from switchboard.engine import LlamaModel
from switchboard.engine.embedded import embedded_model_path
from switchboard.engine.weights import file_type, prepare_weights


def test_q8_0_conversion_is_cached_and_loads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = embedded_model_path()
    assert file_type(source) == llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_1
    caplog.set_level("INFO")
    converted = prepare_weights(source, "q8_0", tmp_path, threads=2)
    assert converted.parent == tmp_path and converted.name.endswith(".Q8_0.gguf")
    assert file_type(converted) == llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    assert "272/272 tensors" in caplog.text  # progress was reported
    mtime = converted.stat().st_mtime_ns
    assert prepare_weights(source, "q8_0", tmp_path, threads=2) == converted
    assert converted.stat().st_mtime_ns == mtime  # reused, not redone
    assert prepare_weights(converted, "q8_0", tmp_path, threads=2) == converted
    model = LlamaModel(converted, n_ctx=256, n_seq_max=1, n_threads=2)
    try:
        assert model.n_vocab == 49152
    finally:
        model.close()


def test_original_weights_are_served_as_shipped(tmp_path: Path) -> None:
    source = embedded_model_path()
    assert prepare_weights(source, "original", tmp_path, threads=2) == source
    assert list(tmp_path.iterdir()) == []
