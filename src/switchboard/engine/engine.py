"""The engine: one thread that owns the model and runs the schedule → decode → sample loop.

Callers (any thread) ``submit`` a ``GenerationRequest`` with a sink; the engine calls the sink from
its own thread with each ``StepOutput``. ``SequenceHandle.cancel`` frees the sequence and its KV
cells at the next step. This module never imports a web framework.

Failures are isolated: only a failed forward pass (or scheduling, shared by all) ends every
sequence. Whatever is computed for one sequence (logit processing, sampling, its grammar,
logprobs, detokenizing, its sink) or one beam search is guarded on its own: when it raises, that
sequence or search ends with an ``error`` output and the others carry on. Sampling runs as one
batch; a batch that fails is sampled again row by row (random generators rewound) to find the
sequence at fault. Greedy sequences may carry a draft of guessed tokens into a pass, checked
against the model's own choices after it (``speculative``).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from switchboard.engine.beam import BeamState
from switchboard.engine.beam_steps import BeamSteps
from switchboard.engine.constraint import GrammarVocabulary, mask_rows
from switchboard.engine.draft_model import DraftModel
from switchboard.engine.model import LlamaModel
from switchboard.engine.prompt_logprobs import prompt_rows, read_prompt_rows
from switchboard.engine.request import (
    EngineError,
    EngineOverloaded,
    GenerationRequest,
    PromptTooLong,
    StepOutput,
    TokenLogprob,
    TopToken,
    check_request,
)
from switchboard.engine.sampler import Sampler, log_softmax, top_logprobs
from switchboard.engine.scheduler import ScheduledChunk, Scheduler, forward_passes
from switchboard.engine.sequence import BeamGroup, OutputSink, Sequence, SequenceStatus
from switchboard.engine.speculative import SpeculativeSteps
from switchboard.engine.token_steps import TokenSteps

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineConfig:
    max_sequences: int = 16  # decoded together
    max_queue: int = 256  # waiting before submit refuses
    token_budget: int = 256  # tokens one step feeds: one per decode, the rest prompt chunks
    cache_slots: int = 16  # finished sequences kept for prefix reuse
    reserved: tuple[tuple[str, int], ...] = ()  # (lane, sequences only that lane may use)
    kv_streams: bool = False  # a KV stream per sequence (the cache keeps idle streams)
    fast_forward: bool = True  # feed the tokens a grammar forces without sampling each
    speculative: bool = True  # prompt-lookup drafts for greedy sequences (see speculative)
    speculative_max_batch: int = 3  # speculate only when at most this many sequences decode
    speculative_max_draft: int = 8  # the longest draft

    def __post_init__(self) -> None:
        if sum(n for _, n in self.reserved) >= self.max_sequences:
            raise ValueError("reserved sequences must leave room for shared traffic "
                             f"(max_sequences is {self.max_sequences})")

    @property
    def sequence_ids(self) -> int:
        """Sequence ids the llama.cpp context must provide (its ``n_seq_max``)."""
        return self.max_sequences if self.kv_streams else self.max_sequences + self.cache_slots


class SequenceHandle:
    def __init__(self, engine: Engine, seq: Sequence) -> None:
        self._engine = engine
        self._seq = seq

    def cancel(self) -> None:
        """Stop generating; the sequence's KV cells are freed at the next step."""
        if self._seq.status is not SequenceStatus.FINISHED and not self._seq.cancelled:
            self._seq.cancelled = True
            self._engine._inbox.put(("cancel", self._seq))


class Engine(BeamSteps, TokenSteps, SpeculativeSteps):
    def __init__(self, model: LlamaModel, config: EngineConfig,
                 draft: LlamaModel | None = None) -> None:
        """``draft``: a smaller model with the same vocabulary whose guesses speculating
        sequences verify (``draft_model``), instead of prompt lookups."""
        self.model = model
        self.draft_model = DraftModel(draft, model) if draft is not None else None
        self.config = config
        self.context_limit = min(model.n_ctx_seq, model.n_ctx_train or model.n_ctx_seq)
        self.sampler = Sampler(model.n_vocab, model.eog_token_ids)
        self.grammar = GrammarVocabulary(model)
        self.fast_forward = config.fast_forward
        self.speculative = config.speculative
        self.speculative_max_batch = config.speculative_max_batch
        self.speculative_max_draft = config.speculative_max_draft
        self.unified_kv = not config.kv_streams
        if model.n_seq_max < config.sequence_ids:
            raise ValueError(f"the model context needs n_seq_max >= {config.sequence_ids}")
        if model.unified_kv == config.kv_streams:
            raise ValueError("the model context's KV layout differs from the engine's kv_streams")
        self.scheduler = Scheduler(
            max_sequences=config.max_sequences,
            cache_slots=config.cache_slots,
            kv_cells=model.n_ctx,
            token_budget=min(config.token_budget, model.n_batch),
            reserved=dict(config.reserved),
            share=model.share,
            forget=model.forget,
            streams=config.kv_streams,
            last_token_alone=config.kv_streams and not model.flash_attn,
        )
        # ("add" | "cancel", sequence), ("abort", reason) or ("stop", None)
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._queued = 0
        self._queued_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="switchboard-engine", daemon=True)
        self._stopping = False
        self._thread.start()

    # --- public API (any thread) -------------------------------------------------------------
    def submit(self, request: GenerationRequest, sink: OutputSink) -> SequenceHandle:
        n_prompt = len(request.prompt_tokens)
        if n_prompt == 0:
            raise EngineError("the prompt is empty")
        check_request(request, self.model.n_vocab)
        if n_prompt >= self.context_limit:
            raise PromptTooLong(n_prompt, self.context_limit)
        room = self.context_limit - n_prompt
        max_new = room if request.params.max_tokens is None else request.params.max_tokens
        if max_new > room:
            raise PromptTooLong(n_prompt, self.context_limit, max_new)
        if request.beam is not None and request.beam.width > self.config.max_sequences:
            raise EngineError(
                f"best_of {request.beam.width} exceeds this server's "
                f"{self.config.max_sequences} concurrent sequences"
            )
        with self._queued_lock:
            if self._queued >= self.config.max_queue:
                raise EngineOverloaded()
            self._queued += 1
        seq = Sequence(request, sink, self.model.n_vocab, max_new)
        if request.beam is not None:
            eog = () if request.params.ignore_eos else self.model.eog_token_ids
            ends = frozenset(eog) | frozenset(request.params.stop_token_ids)
            seq.group = BeamGroup(BeamState(request.beam, max_new, ends), owner=seq, beams=[seq],
                                  constraints=[request.constraint] if request.constraint else [])
        self._inbox.put(("add", seq))
        return SequenceHandle(self, seq)

    def stats(self) -> dict[str, int]:
        return {
            "running": len(self.scheduler.running),
            "waiting": self._queued,
            "cached": len(self.scheduler.cached),
            "kv_used": self.scheduler.kv_used,
            "kv_cells": self.scheduler.kv_cells,
        }

    def abort_all(self, reason: str) -> None:
        """End every queued and running sequence with an error (at the next step)."""
        self._inbox.put(("abort", reason))

    def shutdown(self) -> None:
        self.abort_all("the server is shutting down")
        self._stopping = True
        self._inbox.put(("stop", None))
        self._thread.join(timeout=10)
        self.model.close()
        if self.draft_model is not None:
            self.draft_model.model.close()

    # --- engine thread -----------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping:
            try:
                self._drain_inbox(block=not self.scheduler.has_work())
                if self.scheduler.has_work():
                    self._step()
            except Exception as exc:  # a bug must not kill the thread silently
                log.exception("engine step failed")
                self._fail_all(f"engine error: {exc}")

    def _drain_inbox(self, block: bool) -> None:
        try:
            item = self._inbox.get(timeout=0.5) if block else self._inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            kind, seq = item
            if kind == "add":
                if seq.cancelled:
                    self._release_queue_slot(seq)
                else:
                    self.scheduler.add(seq)
            elif kind == "abort":
                self._fail_all(seq)  # the payload is the reason
            elif kind == "cancel":
                self._release_queue_slot(seq)
                if seq.status is not SequenceStatus.FINISHED:
                    self._release(seq, keep_cache=False)
                    seq.status = SequenceStatus.FINISHED
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _release_queue_slot(self, seq: Sequence) -> None:
        """A sequence holds a waiting-queue slot from ``submit`` until it first runs."""
        if seq.holds_queue_slot:
            seq.holds_queue_slot = False
            with self._queued_lock:
                self._queued -= 1

    def _step(self) -> None:
        chunks, preempted = self.scheduler.schedule()
        now = time.monotonic()
        for seq in self.scheduler.running:
            self._release_queue_slot(seq)
            if seq.scheduled_at is None:
                seq.scheduled_at = now
        if preempted:
            log.info("KV cache full: preempted %d sequence(s) for recompute", len(preempted))
        if not chunks:
            if self.scheduler.running:
                # A single sequence has filled every KV cell: it cannot go on.
                seq = self.scheduler.running[0]
                try:
                    if seq.group is not None:
                        self._finish_beams(seq.group)
                        return
                    self.scheduler.release(seq)
                    seq.finish("length", StepOutput(text=seq.text.flush()))
                except Exception as exc:  # noqa: BLE001 - its own failure
                    self._fail_sequence(seq, exc)
            return
        self._add_drafts(chunks)
        for group in forward_passes(chunks, self.config.kv_streams):
            self._run_pass(group)

    def _run_pass(self, chunks: list[ScheduledChunk]) -> None:
        """One forward pass, then sampling for the chunks that completed their pending tokens
        (so a first token streams out as soon as the pass that completed its prompt ends)."""
        running = set(self.scheduler.running)
        chunks = [c for c in chunks if c.seq in running]  # not failed in an earlier pass
        if not chunks:
            return
        fillers: list[tuple[int, int]] = []
        if self.config.kv_streams and all(c.n_fed == 1 for c in chunks):  # the decode pass
            fillers = self.scheduler.gap_fillers([c.seq.seq_id for c in chunks])
        logits = self.model.decode(*self._assemble(chunks, fillers))  # shared: may fail all
        for seq_id, position in fillers:
            self.model.forget(seq_id, position)
        logits, ended = read_prompt_rows(chunks, logits, self.model)  # prompt logprobs
        completing = [c.completes and c.seq not in ended for c in chunks]
        for chunk in chunks:
            chunk.seq.n_past += chunk.n_tokens
        for seq, failure in ended.items():  # prompt read, nothing to sample
            try:
                if failure is not None:
                    raise failure
                self._finish(seq, "length", StepOutput(text=seq.text.flush()))
            except Exception as exc:  # noqa: BLE001 - this sequence's own failure
                self._fail_sequence(seq, exc)
        completed = [c for c, complete in zip(chunks, completing) if complete]
        rows: dict[Sequence, int] = {}  # each sequence's first row (a draft's rows follow it)
        row = 0
        for chunk in completed:
            rows[chunk.seq] = row
            row += 1 + len(chunk.draft)
        sampled = [c.seq for c in completed if c.seq.group is None and not c.draft]
        if sampled:
            self._sample(sampled, logits, [rows[seq] for seq in sampled])
        for chunk in (c for c in completed if c.draft):
            start = rows[chunk.seq]
            try:
                self._verify(chunk.seq, chunk.draft, logits[start : start + 1 + len(chunk.draft)],
                             chunk.draft_forced)
            except Exception as exc:  # noqa: BLE001 - this sequence's own failure
                self._fail_sequence(chunk.seq, exc)
        groups = {id(c.seq.group): c.seq.group for c in completed if c.seq.group is not None}
        for group in groups.values():
            try:
                self._advance_beams(group, logits, rows)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - one search's failure is its own
                self._fail_sequence(group.owner, exc)  # type: ignore[union-attr]

    @staticmethod
    def _assemble(
        chunks: list[ScheduledChunk], fillers: list[tuple[int, int]] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The pass's token, position, sequence id and wanted-logits arrays; ``fillers`` (id,
        position) add throwaway tokens, kept in id order with the chunks (which are sorted)."""
        total = sum(c.n_fed for c in chunks) + len(fillers or ())
        tokens = np.empty(total, dtype=np.int32)
        positions = np.empty(total, dtype=np.int32)
        seq_ids = np.empty(total, dtype=np.int32)
        want = np.zeros(total, dtype=np.int8)
        at = 0
        for c in chunks:
            seq, n = c.seq, c.n_tokens
            tokens[at : at + n] = seq.tokens[seq.n_past : seq.n_past + n]
            positions[at : at + n] = np.arange(seq.n_past, seq.n_past + n)
            seq_ids[at : at + n] = seq.seq_id
            if c.completes:
                want[at + n - 1] = 1
            for position in prompt_rows(seq, n):
                want[at + position - seq.n_past] = 1
            if c.draft:  # after its last pending token, with a logits row each
                d = len(c.draft)
                tokens[at + n : at + n + d] = c.draft
                positions[at + n : at + n + d] = np.arange(seq.n_past + n, seq.n_past + n + d)
                seq_ids[at + n : at + n + d] = seq.seq_id
                want[at + n : at + n + d] = 1
            at += c.n_fed
        if fillers:
            tokens[at:] = 0
            seq_ids[at:], positions[at:] = zip(*fillers)
            order = np.argsort(seq_ids, kind="stable")
            return tokens[order], positions[order], seq_ids[order], want[order]
        return tokens, positions, seq_ids, want

    def _sample(self, seqs: list[Sequence], logits: np.ndarray, rows: list[int]) -> None:
        """Choose and take each sequence's next token (``logits[rows[i]]`` is ``seqs[i]``'s
        row; ``logits`` is left as it is). A sequence whose work fails ends alone."""
        rngs = [s.sampling.rng.bit_generator for s in seqs]
        states = [g.state for g in rngs]
        try:
            chosen: list[tuple[Sequence, int, np.ndarray | None]] = list(
                zip(seqs, *self._choose(seqs, logits[rows]))
            )
        except Exception:  # find the row at fault
            log.warning("sampling the batch failed; sampling each sequence alone", exc_info=True)
            chosen = []
            for seq, row, rng, state in zip(seqs, rows, rngs, states):
                rng.state = state  # a seeded sequence draws as if the batch had succeeded
                try:
                    tokens, raw = self._choose([seq], logits[[row]])
                except Exception as exc:  # noqa: BLE001 - this row is at fault
                    self._fail_sequence(seq, exc)
                    continue
                chosen.append((seq, tokens[0], raw[0]))
        now = time.monotonic()
        for seq, token, row in chosen:
            try:
                if seq.first_token_at is None:
                    seq.first_token_at = now
                if row is not None:
                    seq.cumulative_logprob += float(row[token])
                lp = self._logprob(row, token, seq) if row is not None and seq.params.logprobs \
                    else None
                self._advance(seq, token, lp)
            except Exception as exc:  # noqa: BLE001 - this sequence's own failure
                self._fail_sequence(seq, exc)

    def _choose(
        self, seqs: list[Sequence], logits: np.ndarray
    ) -> tuple[list[int], list[np.ndarray | None]]:
        """Each sequence's next token, and its raw log-probabilities where it reports them
        (``logits`` is edited in place)."""
        rows = [
            i for i, s in enumerate(seqs) if s.params.logprobs or s.params.cumulative_logprob
        ]
        # Reported logprobs come from the raw distribution, before the sampler edits ``logits``.
        raw_logprobs = dict(zip(rows, log_softmax(logits[rows]))) if rows else {}
        constrained = [i for i, s in enumerate(seqs) if s.constraint is not None]
        unmasked = {i: logits[i].copy() for i in constrained}
        chosen = self.sampler.sample(logits, [s.sampling for s in seqs])
        # A draw the grammar allows stands; the others are drawn again from masked logits.
        rejected = [
            i for i in constrained
            if not seqs[i].constraint.allows(int(chosen[i]))  # type: ignore[union-attr]
        ]
        if rejected:
            masked = np.stack([unmasked[i] for i in rejected])
            mask_rows([seqs[i].constraint for i in rejected], masked)  # type: ignore[misc]
            chosen[rejected] = self.sampler.sample(masked, [seqs[i].sampling for i in rejected])
        tokens = chosen.tolist()
        if not all(0 <= t < self.model.n_vocab for t in tokens):
            raise EngineError("a sampled token is outside the vocabulary")
        return tokens, [raw_logprobs.get(i) for i in range(len(seqs))]

    def _logprob(self, row: np.ndarray, token: int, seq: Sequence) -> TokenLogprob:
        special = not seq.params.skip_special_tokens
        ids, values = top_logprobs(row, seq.params.top_logprobs)
        top = tuple(
            TopToken(int(t), self.model.piece(int(t), special), float(v))
            for t, v in zip(ids, values)
        )
        return TokenLogprob(token, self.model.piece(token, special), float(row[token]), top)

    def _finish(self, seq: Sequence, reason: str, out: StepOutput) -> None:
        self.scheduler.release(seq)
        seq.finish(reason, out)

    def _release(self, seq: Sequence, keep_cache: bool = True) -> None:
        """Release a sequence, or every beam and reserved slot of its beam search."""
        group = seq.group
        if group is None:
            self.scheduler.release(seq, keep_cache)
            return
        # Running members too: a step that failed midway may have attached a beam not yet listed.
        members = [s for s in self.scheduler.running if s.group is group]
        for beam in [*group.beams, *members, group.owner]:
            self.scheduler.release(beam, keep_cache=False)
        group.beams = []
        self.scheduler.free_ids(group.reserved_ids)

    def _fail_sequence(self, seq: Sequence, exc: Exception) -> None:
        """End one sequence, or the whole beam search it belongs to, with an error output,
        after a failure of work done for it alone; every other sequence carries on."""
        owner = seq.group.owner if seq.group is not None else seq
        log.error("generation failed for one request (the others go on)", exc_info=exc)
        with contextlib.suppress(Exception):  # best effort: its cells must not leak
            self._release(owner, keep_cache=False)
        self._release_queue_slot(owner)
        if owner.status is not SequenceStatus.FINISHED:  # its sink may be what failed
            with contextlib.suppress(Exception):
                owner.finish("error", StepOutput(error=f"generation failed: {exc}"))
        owner.status = SequenceStatus.FINISHED

    def _fail_all(self, message: str) -> None:
        owners = {
            id(s.group.owner): s.group.owner for s in self.scheduler.running if s.group is not None
        }
        seqs = [s for s in self.scheduler.running if s.group is None]
        for seq in [*seqs, *owners.values(), *self.scheduler.waiting]:
            with contextlib.suppress(Exception):  # best effort while failing
                self._release(seq, keep_cache=False)
            self._release_queue_slot(seq)
            seq.finish("error", StepOutput(error=message))
