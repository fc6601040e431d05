"""The ``switchboard`` command's process set-up."""

from __future__ import annotations

import gc

from switchboard.cli import settle_garbage_collector


def test_startup_objects_leave_the_cyclic_collector() -> None:
    threshold = gc.get_threshold()
    try:
        settle_garbage_collector()
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # this process's modules, functions, classes
        assert gc.get_threshold()[0] == 10_000
        assert len(gc.get_objects(generation=2)) < frozen  # full collections skip them
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
