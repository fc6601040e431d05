"""Which weight format decodes faster on this machine: a short measurement, kept with the weights.

One stream reads every weight once per token, so it runs at the machine's memory bandwidth and the
smaller file wins (the shipped 4.5-bit Q4_1 over Q8_0); 16 streams are bound by arithmetic, where
Q8_0's simpler dot products win, and machines differ in how much (docs, Performance: "Where one
stream's time goes"). ``weights: auto`` times both candidates in a child process (a llama.cpp
context that computes on one thread slows another computing on a second, so the server's own
threads never run it), one sequence and 16 at a time, alternated, and serves the one with the
higher geometric mean of the two rates: neither a single user nor a busy server is given away for
the other.

The verdict is kept in the cache directory beside the converted weights, keyed by the machine
(``machine_verdicts``), both files and the thread count, so only the first start on a machine
measures. Run as ``python -m switchboard.engine.weight_choice`` it is that child.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import sys
import time
from pathlib import Path

from switchboard.engine.machine_verdicts import (
    file_identity,
    keep_verdict,
    read_verdict,
    verdict_path,
)

log = logging.getLogger(__name__)

CHOICE_TIMEOUT_S = 180.0
SEQUENCES = 16  # the busy case measured
ROUNDS = 2  # alternated rounds; each rate is the best round's


def choose_weights(candidates: list[Path], cache_dir: Path, threads: int,
                   extra_buffers: bool) -> Path:
    """The candidate GGUF (same model, other formats) that decodes faster here; the first one
    where the measurement cannot run."""
    if len(candidates) < 2:
        return candidates[0]
    target = verdict_path("weight-choice", [str(threads), *map(file_identity, candidates)],
                          cache_dir)
    chosen = Path(str((read_verdict(target) or {}).get("chosen")))
    if chosen in candidates:
        log.info("weights: %s is the faster format here (measured once, kept in %s)",
                 chosen.name, cache_dir)
        return chosen
    rates = _measure(candidates, threads, extra_buffers)
    if rates is None:
        return candidates[0]
    scores = [math.sqrt(one * many) for one, many in rates]
    chosen = candidates[scores.index(max(scores))]
    for path, (one, many) in zip(candidates, rates):
        log.info("weights: %s decodes %.0f tok/s alone, %.0f tok/s with %d streams",
                 path.name, one, many, SEQUENCES)
    log.info("weights: serving %s, the faster format on this machine", chosen.name)
    keep_verdict(target, {"chosen": str(chosen), "rates": {
        str(p): {"one": one, "many": many} for p, (one, many) in zip(candidates, rates)}})
    return chosen


def _measure(candidates: list[Path], threads: int,
             extra_buffers: bool) -> list[tuple[float, float]] | None:
    """Each candidate's (one-stream, 16-stream) decode tok/s, from the child."""
    cmd = [sys.executable, "-m", __name__, "--threads", str(threads),
           *([] if extra_buffers else ["--generic-buffers"]), *map(str, candidates)]
    try:
        child = subprocess.run(cmd, capture_output=True, timeout=CHOICE_TIMEOUT_S, check=False)
        rates = json.loads(child.stdout)
        return [(float(one), float(many)) for one, many in rates]
    except (subprocess.TimeoutExpired, OSError, ValueError, TypeError) as exc:
        log.warning("weights: could not measure the formats (%s); serving %s", exc,
                    candidates[0].name)
        return None


def _rates(paths: list[Path], threads: int, extra_buffers: bool) -> list[tuple[float, float]]:
    """Decode one sequence alone and ``SEQUENCES`` together on each model, rounds alternated;
    the best round of each."""
    import numpy as np

    from switchboard.engine.model import LlamaModel

    models = [LlamaModel(p, n_ctx=SEQUENCES * 256, n_seq_max=SEQUENCES, n_threads=threads,
                         unified_kv=False, extra_buffers=extra_buffers) for p in paths]
    ids = np.arange(SEQUENCES, dtype=np.int32)
    best = [[0.0, 0.0] for _ in paths]
    try:
        for round_no in range(ROUNDS + 1):  # round 0 warms each model up, uncounted
            for i, model in enumerate(models):
                for column, width, steps in ((0, 1, 8), (1, SEQUENCES, 3)):
                    started = time.perf_counter()
                    for step in range(steps if round_no else 1):
                        model.decode(np.full(width, 200 + step, dtype=np.int32),
                                     np.full(width, step, dtype=np.int32),
                                     ids[:width], np.ones(width, dtype=np.int8))
                    if round_no:
                        rate = width * steps / (time.perf_counter() - started)
                        best[i][column] = max(best[i][column], rate)
                    for seq in range(width):
                        model.forget(seq)
    finally:
        for model in models:
            model.close()
    return [(one, many) for one, many in best]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--generic-buffers", action="store_true")
    parser.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args()
    print(json.dumps(_rates(args.paths, args.threads, not args.generic_buffers)))


if __name__ == "__main__":
    main()
