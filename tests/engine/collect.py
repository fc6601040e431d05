"""``Collected``: the sink the engine tests give ``Engine.submit``: it keeps a request's outputs
and sets ``done`` when the last one arrives (it runs on the engine thread)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from switchboard.engine import StepOutput


@dataclass
class Collected:
    outputs: list[StepOutput] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def __call__(self, out: StepOutput) -> None:
        self.outputs.append(out)
        if out.finished:
            self.done.set()
