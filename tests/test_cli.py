"""The ``switchboard`` command's process set-up."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from switchboard import cli
from switchboard.settings import Settings


def test_serve_freezes_startup_objects_before_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    """By the time uvicorn runs the app, the objects startup made are out of the cyclic GC's
    scans and young objects are collected every 10,000 allocations."""
    seen: dict[str, Any] = {}

    def run(app: object, **_: object) -> None:
        seen["frozen"] = gc.get_freeze_count()
        seen["threshold"] = gc.get_threshold()
        seen["scanned"] = len(gc.get_objects(generation=2))

    monkeypatch.setattr("uvicorn.run", run)
    monkeypatch.setattr("switchboard.http.create_app", lambda settings: object())
    threshold = gc.get_threshold()
    try:
        assert cli.serve(Settings()) == 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
    assert seen["frozen"] > 10_000  # this process's modules, functions, classes
    assert seen["threshold"][0] == 10_000
    assert seen["scanned"] < seen["frozen"]  # full collections skip the frozen ones
