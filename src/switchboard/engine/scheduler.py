"""Which tokens of which sequences go into the next forward pass.

Continuous batching: waiting sequences join the running set as soon as a sequence slot and KV
cells are free; every step feeds one token per decoding sequence first, then fills the rest of
the per-step token budget with prompt chunks, so running streams keep flowing while a long prompt
is read. When the shared KV cache runs out the youngest sequence is preempted (its cells dropped)
and re-queued at the front, to be recomputed later.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from switchboard.engine.sequence import Sequence, SequenceStatus


@dataclass
class ScheduledChunk:
    seq: Sequence
    n_tokens: int

    @property
    def completes(self) -> bool:
        """After this chunk the sequence has no pending tokens: its logits are sampled."""
        return self.seq.n_past + self.n_tokens == len(self.seq.tokens)


class Scheduler:
    def __init__(
        self,
        max_sequences: int,
        kv_cells: int,
        token_budget: int,
        forget: Callable[[int], None],
    ) -> None:
        self._forget = forget  # drops a sequence id's KV cells
        self.max_sequences = max_sequences
        self.kv_cells = kv_cells
        self.token_budget = token_budget
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self._free_ids = list(range(max_sequences - 1, -1, -1))

    @property
    def kv_used(self) -> int:
        return sum(s.n_past for s in self.running)

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def release(self, seq: Sequence) -> None:
        """Forget a finished or cancelled sequence and free its KV cells."""
        if seq in self.running:
            self.running.remove(seq)
            self._forget(seq.seq_id)
            self._free_ids.append(seq.seq_id)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        seq.seq_id = -1

    def schedule(self) -> tuple[list[ScheduledChunk], list[Sequence]]:
        """Plan one step. Returns the chunks to feed and the sequences preempted to make room."""
        preempted = self._make_room_for_decodes()
        self._admit()
        budget = self.token_budget
        chunks: list[ScheduledChunk] = []
        free_cells = self.kv_cells - self.kv_used
        for seq in self.running:  # decodes first: one token each
            if seq.n_pending == 1 and budget > 0 and free_cells > 0:
                chunks.append(ScheduledChunk(seq, 1))
                budget -= 1
                free_cells -= 1
        for seq in self.running:  # then prompt chunks, oldest first
            if seq.n_pending > 1 and budget > 0 and free_cells > 0:
                n = min(seq.n_pending, budget, free_cells)
                chunks.append(ScheduledChunk(seq, n))
                budget -= n
                free_cells -= n
        return chunks, preempted

    def _admit(self) -> None:
        while self.waiting and self._free_ids:
            seq = self.waiting[0]
            reserve = sum(1 for s in self.running if s.n_pending <= 1)
            pending_prefill = sum(s.n_pending for s in self.running if s.n_pending > 1)
            need = seq.n_pending + self.kv_used + pending_prefill + reserve
            if self.running and need > self.kv_cells:
                break
            self.waiting.popleft()
            seq.seq_id = self._free_ids.pop()
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)

    def _make_room_for_decodes(self) -> list[Sequence]:
        preempted: list[Sequence] = []
        while len(self.running) > 1:
            decoding = sum(1 for s in self.running if s.n_pending == 1)
            if self.kv_used + decoding <= self.kv_cells:
                break
            victim = self.running[-1]
            self.running.remove(victim)
            self._forget(victim.seq_id)
            self._free_ids.append(victim.seq_id)
            victim.seq_id = -1
            preempted.append(victim)
            victim.n_past = 0
            victim.status = SequenceStatus.WAITING
            self.waiting.appendleft(victim)
        return preempted
