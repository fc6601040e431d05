"""Beam search inside the engine step: score the live beams, keep the best, move KV cells.

``BeamState`` (``switchboard.engine.beam``) decides which beams survive; these steps, a part of
``Engine`` kept in a module of their own, apply the decision to the model's KV cells and to the
scheduler's sequences, and send a search's ``n`` outputs when it ends. A step that raises here
ends only its own search (``Engine._run_pass`` guards each one).
"""

from __future__ import annotations

import time

import numpy as np

from switchboard.engine.constraint import mask_rows
from switchboard.engine.detokenizer import TextStream
from switchboard.engine.model import LlamaModel
from switchboard.engine.request import EngineError, StepOutput
from switchboard.engine.sampler import NonFiniteScores, Sampler, log_softmax
from switchboard.engine.scheduler import Scheduler
from switchboard.engine.sequence import BeamGroup, Sequence, SequenceStatus


class BeamSteps:
    """The beam-search part of ``Engine`` (which provides these attributes and ``_release``)."""

    model: LlamaModel
    scheduler: Scheduler
    sampler: Sampler

    def _release(self, seq: Sequence, keep_cache: bool = True) -> None:
        raise NotImplementedError

    def _advance_beams(
        self, group: BeamGroup, logits: np.ndarray, rows: dict[Sequence, int]
    ) -> None:
        """One beam-search step: score, keep the best ``width`` beams, move their KV cells."""
        if any(b not in rows for b in group.beams):
            # The KV cache could not take every beam's next token: undo this step and end the
            # search with what it has (beams advance in lockstep or not at all).
            for beam in group.beams:
                if beam in rows:
                    beam.n_past -= 1
                    self.model.forget(beam.seq_id, beam.n_past)
            self._finish_beams(group)
            return
        raw = logits[[rows[b] for b in group.beams]]
        for row, beam in zip(raw, group.beams):
            self.sampler.process(row, beam.sampling)
        if group.constraints:  # each beam's grammar masks its own row
            mask_rows(group.constraints, raw)
        peak = raw.max(axis=1)
        if np.isnan(peak).any() or (peak == np.inf).any():
            raise NonFiniteScores()
        logprobs = log_softmax(raw)
        owner = group.owner
        if owner.first_token_at is None:
            owner.first_token_at = time.monotonic()
            survivors = group.state.start(logprobs[0])
        else:
            survivors = group.state.step(logprobs)
        if group.constraints:  # survivors follow their parent's grammar state, then their token
            forks = [group.constraints[c.parent].fork() for c in survivors]
            for constraint, c in zip(forks, survivors):
                constraint.accept(c.token)
            group.constraints = forks
        self._rearrange_beams(group, [c.parent for c in survivors])
        for beam, tokens in zip(group.beams, group.state.generated):
            beam.tokens = beam.tokens[: beam.n_prompt] + tokens
            beam.sampling.generated = len(tokens)
        if group.state.done or not group.beams:
            self._finish_beams(group)

    def _rearrange_beams(self, group: BeamGroup, parents: list[int]) -> None:
        """Give survivor ``i`` the KV cells of live beam ``parents[i]`` (shared, not copied)."""
        old = group.beams
        spare = [b for i, b in enumerate(old) if i not in parents]
        taken: set[int] = set()
        new: list[Sequence] = []
        for p in parents:
            parent = old[p]
            if p not in taken:
                taken.add(p)
                new.append(parent)
                continue
            if spare:
                beam = spare.pop()
                self.model.forget(beam.seq_id)
            else:
                beam = parent.fork()
                self.scheduler.attach(beam, group.reserved_ids.pop())
            self.model.share(parent.seq_id, beam.seq_id, parent.n_past)
            beam.n_past = parent.n_past
            new.append(beam)
        for beam in spare:
            self.scheduler.release(beam, keep_cache=False)
        group.beams = new

    def _finish_beams(self, group: BeamGroup) -> None:
        root = group.owner
        best = group.state.best()
        self._release(root, keep_cache=False)
        if len(best) < group.state.params.n:  # every output is awaited: never send fewer
            raise EngineError(f"beam search found {len(best)} of the "
                              f"{group.state.params.n} completions asked for")
        p = root.params
        special = not p.skip_special_tokens
        for choice, hyp in enumerate(best):
            text = b"".join(self.model.piece(t, special) for t in hyp.tokens)
            stream = TextStream(p.stop, p.include_stop_str_in_output)
            out_text = stream.push(text)
            reason = "stop" if stream.stopped else hyp.finish_reason
            out_text += stream.flush()
            out = StepOutput(
                text=out_text, choice=choice, token_ids=list(hyp.tokens),
                cumulative_logprob=hyp.cum_logprob,
            )
            out.finish_reason = reason
            out.metrics = root.metrics()
            out.prompt_tokens = root.n_prompt
            out.completion_tokens = len(hyp.tokens)
            root.sink(out)
        root.status = SequenceStatus.FINISHED
