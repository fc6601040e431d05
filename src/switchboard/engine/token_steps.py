"""A sampled sequence's step after its draw: take the token, and fast-forward through the tokens
its grammar then forces.

Where a sequence's grammar leaves exactly one continuation (a JSON key, punctuation, the rest of
an enum value, a tool-call wrapper), llguidance names the forced tokens; they are appended right
after the sampled token without a sampling step each, and all of them are fed in the next forward
pass, like a short prompt chunk, of which only the last position's logits are read. Each token,
sampled or forced, goes through the same checks (grammar, end-of-generation and stop tokens, stop
strings, ``max_tokens``); the first that ends the sequence drops the forced tokens after it.

Fast-forward is off for requests that report logprobs or a cumulative logprob (a forced token has
no sampled distribution) and for beam search; ``EngineConfig.fast_forward`` turns it off for all.
Greedy sequences do not take forced tokens unchecked: the grammar's split of the forced text is
not always the model's, and a greedy output must not depend on fast-forward. With flash
attention they draft the forced tokens and keep those the model agrees with (``speculative``:
the same pass, exact); without it, where a token read among others gets other numbers than one
read alone, they decode one token per pass.
These steps are a part of ``Engine`` kept in a module of their own.
"""

from __future__ import annotations

from switchboard.engine.model import LlamaModel
from switchboard.engine.request import StepOutput, TokenLogprob
from switchboard.engine.scheduler import Scheduler
from switchboard.engine.sequence import Sequence


class TokenSteps:
    """The per-token part of ``Engine`` (which provides these attributes and ``_finish``)."""

    model: LlamaModel
    scheduler: Scheduler
    fast_forward: bool

    def _finish(self, seq: Sequence, reason: str, out: StepOutput) -> None:
        raise NotImplementedError

    def _advance(self, seq: Sequence, token: int, lp: TokenLogprob | None) -> None:
        """Take the sampled ``token`` and the forced tokens that follow it; emit them as one
        output, or end the sequence where one of them ends it."""
        out = StepOutput()
        reason, _ = self._take_and_forced(seq, token, lp, out)
        self._conclude(seq, reason, out)

    def _take_and_forced(
        self, seq: Sequence, token: int, lp: TokenLogprob | None, out: StepOutput
    ) -> tuple[str | None, bool]:
        """Take ``token`` and the forced tokens that follow it: the finish reason, if one of
        them ends the sequence, and whether any token was forced."""
        reason = self._take(seq, token, lp, out)
        forced_any = False
        if reason is None and self._fast_forwards(seq):
            for forced in seq.constraint.forced():  # type: ignore[union-attr]
                forced_any = True
                reason = self._take(seq, forced, None, out)
                if reason is not None:
                    break
        return reason, forced_any

    def _conclude(self, seq: Sequence, reason: str | None, out: StepOutput) -> None:
        """Emit the step's tokens, or end the sequence with them for ``reason``."""
        if reason is None:
            if seq.constraint is not None:
                seq.constraint.prefetch_if_needed()
            seq.emit(out)
        elif reason == "error":
            self.scheduler.release(seq, keep_cache=False)
            seq.finish("error", out)
        else:
            self._finish(seq, reason, out)

    def _fast_forwards(self, seq: Sequence) -> bool:
        p = seq.params
        return (
            self.fast_forward and seq.constraint is not None and seq.group is None
            and not p.logprobs and not p.cumulative_logprob and not p.greedy
        )

    def _take(
        self, seq: Sequence, token: int, lp: TokenLogprob | None, out: StepOutput
    ) -> str | None:
        """Append one token to ``seq`` and to ``out``; the finish reason it causes, if any."""
        seq.tokens.append(token)
        seq.sampling.accept(token)
        out.token_ids.append(token)
        p = seq.params
        if seq.constraint is not None and not seq.constraint.accept(token, prefetch=False):
            out.error = f"constraint violated: {seq.constraint.error or 'no token was allowed'}"
            return "error"
        if (not p.ignore_eos and self.model.is_eog(token)) or token in p.stop_token_ids:
            if lp is not None and p.stop_token_logprob:
                out.logprobs.append(lp)
            out.text += seq.text.flush()
            return "stop"
        if lp is not None:
            out.logprobs.append(lp)
        out.text += seq.text.push(self.model.piece(token, special=not p.skip_special_tokens))
        if seq.text.stopped:
            return "stop"
        if seq.constraint is not None and seq.constraint.finished:
            out.text += seq.text.flush()
            return "stop"
        if seq.n_generated >= seq.max_new_tokens:
            out.text += seq.text.flush()
            return "length"
        return None
