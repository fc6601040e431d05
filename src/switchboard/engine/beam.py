"""Beam search as the Telnyx API (and vLLM before v0.6) defines it.

``best_of`` beams advance together; each step every live beam proposes its best continuations,
the ``best_of`` highest cumulative log-probabilities survive, and a beam that ends (end of
sequence, a stop token, or ``max_tokens``) becomes a finished hypothesis scored
``cum_logprob / length ** length_penalty`` (compared in log space, so no length penalty overflows
or divides by zero). ``early_stopping`` follows Hugging Face: ``True`` stops
once ``best_of`` hypotheses are finished, ``False`` stops when no live beam can still beat the
worst kept hypothesis at its current length, ``"never"`` when none could at the longest length.
The best ``n`` hypotheses are returned. This module decides; the engine moves the KV cells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class BeamSearchParams:
    width: int  # best_of
    n: int
    length_penalty: float = 1.0
    early_stopping: bool | str = False


@dataclass
class Hypothesis:
    tokens: list[int]  # generated tokens (the end-of-sequence token excluded)
    cum_logprob: float
    finish_reason: str
    length: int  # generated length used for the length penalty (includes the ending token)

    def score(self, length_penalty: float) -> float:
        return score(self.cum_logprob, self.length, length_penalty)

    def rank(self, length_penalty: float) -> float:
        return rank(self.cum_logprob, self.length, length_penalty)


def rank(cum_logprob: float, length: int, length_penalty: float) -> float:
    """A key that orders beams as ``score`` does, finite or -inf whatever the length penalty:
    ``-log(-score)``, as a score is never positive (``cum_logprob`` sums log-probabilities).
    Not a number (a distribution that had none) ranks last."""
    if cum_logprob >= 0.0:
        return math.inf
    if math.isnan(cum_logprob) or math.isnan(length_penalty):
        return -math.inf
    log_magnitude = math.log(-cum_logprob) - length_penalty * math.log(max(1, length))
    return -log_magnitude


def score(cum_logprob: float, length: int, length_penalty: float) -> float:
    """``cum_logprob / length ** length_penalty``, computed as ``-exp(-rank)``: past the range of a
    float it is -inf or -0.0, never an overflow or a division by zero."""
    key = rank(cum_logprob, length, length_penalty)
    if key == math.inf:
        return 0.0
    return -math.exp(-key) if key > -709.0 else -math.inf


@dataclass
class Candidate:
    parent: int  # index of the live beam it extends
    token: int
    cum_logprob: float


@dataclass
class BeamState:
    params: BeamSearchParams
    max_new_tokens: int
    ends: frozenset[int]  # tokens that end a beam (end of sequence, stop token ids)
    generated: list[list[int]] = field(default_factory=list)  # per live beam
    cum: list[float] = field(default_factory=list)
    finished: list[Hypothesis] = field(default_factory=list)
    done: bool = False

    def start(self, logprobs: np.ndarray) -> list[Candidate]:
        """First step: the root's distribution gives the ``width`` first tokens."""
        self.generated, self.cum = [[]], [0.0]
        return self.step(logprobs[None, :])

    def step(self, logprobs: np.ndarray) -> list[Candidate]:
        """``logprobs[i]`` is live beam ``i``'s next-token distribution. Returns the survivors;
        ``generated``/``cum`` then describe them (in the returned order)."""
        width = self.params.width
        k = min(2 * width, logprobs.shape[1])
        top = np.argpartition(logprobs, -k, axis=1)[:, -k:]
        cands: list[Candidate] = []
        for i, ids in enumerate(top):
            for t in ids.tolist():
                cum = self.cum[i] + float(logprobs[i, t])
                if not math.isnan(cum):  # a row with no possible token proposes nothing
                    cands.append(Candidate(i, t, cum))
        cands.sort(key=lambda c: c.cum_logprob, reverse=True)
        survivors: list[Candidate] = []
        length = len(self.generated[0]) + 1
        for c in cands:
            if c.token in self.ends:
                if len(survivors) < width:  # only ends that rank among the best count
                    self._add_finished(self.generated[c.parent], c.cum_logprob, "stop", length)
                continue
            survivors.append(c)
            if len(survivors) == width:
                break
        self.generated = [self.generated[c.parent] + [c.token] for c in survivors]
        self.cum = [c.cum_logprob for c in survivors]
        if length >= self.max_new_tokens:
            for tokens, cum in zip(self.generated, self.cum):
                self._add_finished(tokens, cum, "length", length)
            self.done = True
        else:
            self.done = self._is_done(length)
        return survivors

    def _add_finished(self, tokens: list[int], cum: float, reason: str, length: int) -> None:
        self.finished.append(Hypothesis(list(tokens), cum, reason, length))
        lp = self.params.length_penalty
        self.finished.sort(key=lambda h: h.rank(lp), reverse=True)
        del self.finished[self.params.width :]

    def _is_done(self, length: int) -> bool:
        p = self.params
        if not self.cum:
            return True
        if len(self.finished) < p.width:
            return False
        if p.early_stopping is True:
            return True
        worst = self.finished[-1].rank(p.length_penalty)
        best_live = max(self.cum)
        if p.early_stopping == "never" and p.length_penalty > 0:
            horizon = self.max_new_tokens  # a longer beam could still score higher
        else:
            horizon = length
        return rank(best_live, horizon, p.length_penalty) <= worst

    def best(self) -> list[Hypothesis]:
        """The ``n`` best hypotheses (live beams count if too few have finished)."""
        pool = list(self.finished)
        if len(pool) < self.params.n:
            length = len(self.generated[0]) if self.generated else 0
            pool += [
                Hypothesis(list(t), c, "length", length) for t, c in zip(self.generated, self.cum)
            ]
        pool.sort(key=lambda h: h.rank(self.params.length_penalty), reverse=True)
        return pool[: self.params.n]
