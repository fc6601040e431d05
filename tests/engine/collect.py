"""``Collected``: the sink the engine tests give ``Engine.submit``: it keeps a request's outputs
and sets ``done`` when the last one arrives (it runs on the engine thread). ``count_passes``:
a counter of a model's forward passes."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from switchboard.engine import LlamaModel, StepOutput


@dataclass
class Collected:
    outputs: list[StepOutput] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def __call__(self, out: StepOutput) -> None:
        self.outputs.append(out)
        if out.finished:
            self.done.set()


def count_passes(model: LlamaModel) -> list[int]:
    """Count ``model``'s forward passes from now on, in the returned list's only item."""
    passes = [0]
    decode = model.decode

    def counted(*args: np.ndarray) -> np.ndarray:
        passes[0] += 1
        return decode(*args)

    model.decode = counted  # type: ignore[method-assign]
    return passes
