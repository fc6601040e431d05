"""Prompt logprobs: how likely each prompt token was given the tokens before it.

A sequence whose ``SamplingParams.prompt_logprobs`` is set (the number of most likely alternatives
to report per position) has the logits of every prompt position computed while its prompt is read:
the pass flags those rows (``prompt_rows``), and ``read_prompt_rows`` scores them and takes them
out of the pass's logits, leaving the rows the engine samples from. Other sequences pay nothing.
Such a sequence reads its whole prompt itself (the scheduler lends it no cached prefix, whose
logits were never computed). Entry ``j`` of ``Sequence.prompt_logprobs`` scores the token at
position ``j + 1`` (the first token has no context to be scored in); a sequence recomputed after a
preemption does not score its positions twice. A sequence whose ``max_tokens`` is 0 ends when its
prompt has been read (finish reason ``length``), without sampling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from switchboard.engine.request import TokenLogprob, TopToken
from switchboard.engine.sampler import log_softmax, top_logprobs

if TYPE_CHECKING:
    from switchboard.engine.scheduler import ScheduledChunk
    from switchboard.engine.sequence import Sequence


class Pieces(Protocol):
    def piece(self, token: int, special: bool = False) -> bytes: ...


def prompt_rows(seq: Sequence, n_tokens: int) -> range:
    """Positions among the next ``n_tokens`` fed for ``seq`` whose logits score a prompt token
    not scored yet (empty unless the sequence asked for prompt logprobs)."""
    if seq.params.prompt_logprobs is None:
        return range(0)
    start = max(seq.n_past, len(seq.prompt_logprobs))
    return range(start, max(start, min(seq.n_past + n_tokens, seq.n_prompt - 1)))


def read_prompt_rows(
    chunks: list[ScheduledChunk], logits: np.ndarray, model: Pieces
) -> tuple[np.ndarray, dict[Sequence, Exception | None]]:
    """Score the prompt rows of a pass whose logits were flagged with ``prompt_rows`` (call it
    before the chunks' ``n_past`` moves on). Returns the rows left to sample from, one per
    completing chunk in order (and one per drafted token after it), and the sequences that
    must not be sampled: those that asked for no token (``None``) and those whose scoring
    failed (the exception)."""
    if not any(prompt_rows(c.seq, c.n_tokens) or c.seq.max_new_tokens == 0 for c in chunks):
        return logits, {}
    kept: list[int] = []
    ended: dict[Sequence, Exception | None] = {}
    at = 0
    for chunk in chunks:
        seq = chunk.seq
        positions = prompt_rows(seq, chunk.n_tokens)
        if positions:
            try:
                _score(seq, positions, logits[at : at + len(positions)], model)
            except Exception as exc:  # noqa: BLE001 - this sequence's own failure
                ended[seq] = exc
            at += len(positions)
        if chunk.completes:
            if seq not in ended and seq.max_new_tokens == 0:
                ended[seq] = None
            rows = 1 + len(chunk.draft)  # a drafted chunk's rows follow its last token's
            if seq not in ended:
                kept.extend(range(at, at + rows))
            at += rows
    return logits[kept], ended


def _score(seq: Sequence, positions: range, rows: np.ndarray, model: Pieces) -> None:
    k = seq.params.prompt_logprobs or 0
    scores = log_softmax(rows)
    for row, position in zip(scores, positions):
        token = seq.tokens[position + 1]
        ids, values = top_logprobs(row, k)
        top = tuple(TopToken(int(t), model.piece(int(t), True), float(v))
                    for t, v in zip(ids, values))
        seq.prompt_logprobs.append(
            TokenLogprob(token, model.piece(token, True), float(row[token]), top))
