"""The ``weights`` setting picks the file a local model is served from; ``auto`` measures the
shipped file against its Q8_0 conversion once, then reads the kept verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.engine import weight_choice
from switchboard.engine.embedded import embedded_model_path
from switchboard.serving.catalog import _weights_path
from switchboard.settings import Settings


def test_auto_serves_one_of_the_two_formats_and_keeps_the_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = embedded_model_path()
    settings = Settings(weights="auto", cache_dir=tmp_path, n_threads=2)
    converted = _weights_path(Settings(weights="q8_0", cache_dir=tmp_path, n_threads=2), source)
    chosen = _weights_path(settings, source)
    assert chosen in (source, converted)
    assert len(list(tmp_path.glob("weight-choice.*.json"))) == 1
    monkeypatch.setattr(weight_choice, "_measure", pytest.fail)  # the next start reads it
    assert _weights_path(settings, source) == chosen
    assert _weights_path(Settings(weights="original", cache_dir=tmp_path), source) == source
