"""Speculative decoding with prompt-lookup drafts: guess a sequence's next tokens from its own
context, feed them in the pass that feeds its sampled token, keep those the model agrees with.

**Drafts** (``propose``): the longest suffix of the sequence's tokens (prompt and output), of
``NGRAM_MAX`` down to ``NGRAM_MIN`` tokens, that occurred earlier in them; the draft is what
followed its most recent earlier occurrence. Quoting, rewriting a JSON object or editing code
repeats long stretches of the context, so those drafts hold; free text seldom matches a 2-gram
and then drafts nothing. With a draft model (``--draft-model``, ``draft_model``) its greedy
guesses are the drafts instead, verified the same way. The draft's length follows the
sequence's recent acceptance rate (``DraftStats``: 1 to ``EngineConfig.speculative_max_draft``
tokens), cut at ``max_tokens`` and at the first token its grammar rejects.

**Only with flash attention**: llama.cpp's attention without it gives a token read alone (a
decode) other numbers than the same token read among others (a draft's rows), enough to change
a greedy choice now and then; with flash attention every row's numbers are the same however the
tokens are batched, so a speculative greedy output is the non-speculative one, token for token.

**Which sequences speculate**: greedy ones (temperature 0 or top_k 1) outside beam search, when
at most ``EngineConfig.speculative_max_batch`` sequences decode in the step (with more, the
extra positions cost more than the tokens they save); in a unified KV pool at most one per step
(a pass with several multi-token sequences changes their numbers: ``scheduler.forward_passes``).
Sampled requests never speculate: the rejection rule would keep their distribution, but not
the draws a seeded request makes whatever else shares the batch.

**Forced drafts**: a greedy sequence whose grammar forces its next tokens (fast-forward, see
``token_steps``) drafts exactly those, at any batch size, instead of taking them unchecked: the
grammar's split of forced text (``":"``) is not always the one the model would choose (``":``
then ``"``), and only a verified draft gives the output of a sequence decoded token by token.
They count as fast-forward, not in the speculative metrics.

**Verification** (``_verify``): the pass returns the logits at the sampled token and at each
drafted one. Row ``j`` is chosen from exactly as a decode step would choose (same logit
processors, penalties, grammar and logprobs, with the state after the tokens before it); while
the choice equals draft token ``j`` it is taken and the next row read, and the first choice
that differs, or the one after the last draft token, is taken as the next pending token. Each
taken token goes through the usual checks (stop tokens and strings, ``max_tokens``, the
grammar, whose forced tokens end the verification as they end a step). The KV cells of the
rejected draft tokens are dropped (``LlamaModel.forget`` from the sequence's new ``n_past``), so
the prefix cache and the scheduler's accounting see only accepted tokens.
These steps are a part of ``Engine`` kept in a module of their own.
"""

from __future__ import annotations

import logging

import numpy as np

from switchboard.engine.draft_model import DraftModel
from switchboard.engine.model import LlamaModel
from switchboard.engine.request import StepOutput, TokenLogprob
from switchboard.engine.scheduler import ScheduledChunk, Scheduler
from switchboard.engine.sequence import Sequence

log = logging.getLogger(__name__)

NGRAM_MAX = 4  # the longest suffix looked up
NGRAM_MIN = 2  # a single repeated token predicts little (a quote mark, a newline)


def propose(tokens: list[int], k: int, n_max: int = NGRAM_MAX, n_min: int = NGRAM_MIN
            ) -> list[int]:
    """Up to ``k`` tokens that followed the most recent earlier occurrence of the longest
    suffix of ``tokens`` (``n_max`` down to ``n_min`` tokens long); empty when none recurs."""
    size = len(tokens)
    if k <= 0 or size <= n_min:
        return []
    seq = np.asarray(tokens, dtype=np.int64)
    # Ends of earlier occurrences of the last token, then of the last 2, 3, ... tokens.
    ends = np.flatnonzero(seq[: size - 1] == seq[-1])
    best = ends if n_min <= 1 else np.empty(0, dtype=np.int64)
    for length in range(2, n_max + 1):
        ends = ends[ends >= length - 1]
        ends = ends[seq[ends - (length - 1)] == seq[size - length]]
        if len(ends) == 0:
            break
        if length >= n_min:
            best = ends
    if len(best) == 0:
        return []
    start = int(best[-1]) + 1
    return seq[start : start + k].tolist()


class SpeculativeSteps:
    """The speculative part of ``Engine`` (which provides these attributes and methods)."""

    model: LlamaModel
    scheduler: Scheduler
    speculative: bool
    speculative_max_batch: int
    speculative_max_draft: int
    unified_kv: bool
    fast_forward: bool
    draft_model: DraftModel | None

    def _choose(self, seqs: list[Sequence], logits: np.ndarray
                ) -> tuple[list[int], list[np.ndarray | None]]:
        raise NotImplementedError

    def _logprob(self, row: np.ndarray, token: int, seq: Sequence) -> TokenLogprob:
        raise NotImplementedError

    def _take_and_forced(self, seq: Sequence, token: int, lp: TokenLogprob | None,
                         out: StepOutput) -> tuple[str | None, bool]:
        raise NotImplementedError

    def _conclude(self, seq: Sequence, reason: str | None, out: StepOutput) -> None:
        raise NotImplementedError

    def _guess(self, seq: Sequence, k: int) -> list[int]:
        """A draft of up to ``k`` tokens: the draft model's, else a prompt lookup's."""
        if self.draft_model is None:
            return propose(seq.tokens, k)
        try:
            return self.draft_model.propose(seq, k)
        except Exception:  # a draft is only a guess: without one the step goes on as usual
            log.warning("the draft model failed; this step decodes without a draft",
                        exc_info=True)
            self.draft_model.forget(seq)
            return []

    @staticmethod
    def _speculates(seq: Sequence) -> bool:
        return seq.group is None and seq.params.greedy

    def _add_drafts(self, chunks: list[ScheduledChunk]) -> None:
        """Give the step's eligible decodes a draft each (the tokens their grammar forces, else
        a guess: ``_guess``), within the step's token budget and the free KV cells."""
        decodes = [c for c in chunks if c.seq.decoding]
        if not self.model.flash_attn or not decodes:
            return
        guesses = self.speculative and len(decodes) <= self.speculative_max_batch
        if not guesses and not self.fast_forward:
            return
        fed = sum(c.n_fed for c in chunks)
        budget = self.scheduler.token_budget - fed
        # A stream holds its sequence's whole context; a unified pool has cells to run out of.
        free = budget if not self.unified_kv else \
            self.scheduler.kv_cells - self.scheduler.kv_used - fed
        multi_token = any(c.n_tokens > 1 for c in decodes)
        for chunk in decodes:
            seq = chunk.seq
            if self.unified_kv and multi_token:
                return
            if chunk.n_tokens != 1 or seq.n_pending != 1 or not self._speculates(seq):
                continue
            room = min(budget, free, seq.max_new_tokens - seq.n_generated)
            draft: list[int] = []
            if self.fast_forward and seq.constraint is not None:
                draft = seq.constraint.forced()[:room]
                chunk.draft_forced = bool(draft)
            if not draft and guesses:
                draft = self._guess(seq, min(room, seq.drafts.length(self.speculative_max_draft)))
                if draft and seq.constraint is not None:
                    draft = draft[: seq.constraint.valid_prefix(draft)]
            if draft:
                chunk.draft = draft
                budget -= len(draft)
                free -= len(draft)
                multi_token = True

    def _verify(self, seq: Sequence, draft: list[int], rows: np.ndarray,
                forced: bool = False) -> None:
        """Take the longest prefix of ``draft`` the model agrees with, and the model's own
        token after it (``rows[j]``: the logits after the sampled token and ``draft[:j]``; its
        ``n_past`` already counts the sampled token, not the draft; ``forced``: the draft is
        what the grammar forces, not counted as speculation)."""
        out = StepOutput()
        reason: str | None = None
        accepted = 0
        for j in range(len(draft) + 1):
            tokens, raw = self._choose([seq], rows[j : j + 1])
            token, row = tokens[0], raw[0]
            if row is not None:
                seq.cumulative_logprob += float(row[token])
            lp = self._logprob(row, token, seq) if row is not None and seq.params.logprobs \
                else None
            hit = j < len(draft) and token == draft[j]
            if hit:  # its KV cell, written by this pass, stays
                seq.n_past += 1
                accepted += 1
            reason, forced = self._take_and_forced(seq, token, lp, out)
            if reason is not None or forced or not hit:
                break
        if not forced:
            seq.drafts.record(len(draft), accepted)
        self.model.forget(seq.seq_id, seq.n_past)  # the rejected draft tokens' cells
        self._conclude(seq, reason, out)
