"""Which tokens of which sequences go into the next forward pass, and who owns which KV cells.

Continuous batching: waiting sequences join the running set as soon as a sequence slot and KV
cells are free; every step feeds one token per decoding sequence (or the sampled token and the
tokens its grammar forced after it: see ``token_steps``), and fills the rest of the per-step
token budget with prompt chunks, so running streams keep flowing while a long prompt is
read (a step lasts about as long as its budget of tokens takes to compute). When the shared KV
cache runs out the youngest sequence is preempted (its cells dropped) and re-queued at the front,
to be recomputed later.

Dedicated capacity: a lane (a dedicated deployment) may have sequences reserved; they are used
only by that lane, which also shares the rest with everyone. The first waiting sequence whose
lane has room is admitted, so a full shared pool never blocks a dedicated request.

Tenants take turns: waiting sequences are admitted preempted ones first, then those of the
tenant (``GenerationRequest.tenant``, an API key) with the fewest running sequences, the tenant
admitted least recently first among equals, in arrival order within a tenant; so a key that
sends hundreds of requests at once does not make another key's request wait for all of them.

Prefix cache: finished sequences keep their cells (least recently used first out). A new sequence
starts from the longest prefix of its tokens already held by a running or cached sequence; the
cells are shared (``llama_memory_seq_cp``), not copied. A sequence whose prompt another running
sequence is still reading waits for it, so ``n`` choices and bursts with one system prompt read
the shared part once. Cell accounting: a sequence owns ``n_past - shared_len`` cells; its first
``shared_len`` cells are counted in its ``source``; when a source goes, its largest child inherits.

With a KV stream per sequence (``streams``) there is no pool to run out of (each stream holds a
whole context) and cells cannot be shared, only copied (``LlamaModel.share``). The prefix cache is
then the idle streams: a prompt that continues a cached sequence takes over its stream (its
unshared tail is cut), one that shares a prefix with a running sequence, or with only part of a
cached one, gets a copy (the cached one is kept for its own next turn, unless keeping it would
evict another cached stream and the prompt reuses more of it than it would cut). llama.cpp splits a
forward pass wherever sequence ids stop being consecutive, so new sequences take free ids next
to running ones.
"""

from __future__ import annotations

import itertools
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from switchboard.engine.sequence import Sequence, SequenceStatus

MIN_DEFER_GAIN = 32  # wait for another sequence's prefill only if it saves this many tokens
MIN_STREAM_COPY = 16  # copy cells into a stream (not free) only to skip reading this many
# With streams llama.cpp splits a pass at each gap in the ids, and each extra split costs more
# than a throwaway token in each id of a gap this short, which keeps the pass whole (docs,
# Performance: "Holes in the ids").
MAX_GAP_FILL = 2
MAX_TENANTS_REMEMBERED = 4096  # tenants whose last admission is kept (see _admitted)


@dataclass
class ScheduledChunk:
    seq: Sequence
    n_tokens: int  # of the sequence's pending tokens
    # Speculative tokens fed after them, each with its logits row (see ``speculative``).
    draft: list[int] = field(default_factory=list)
    draft_forced: bool = False  # the draft is the tokens the grammar forces (not a guess)

    @property
    def completes(self) -> bool:
        """After this chunk the sequence has no pending tokens: its logits are sampled."""
        return self.seq.n_past + self.n_tokens == len(self.seq.tokens)

    @property
    def n_fed(self) -> int:
        """Tokens this chunk puts in the forward pass (pending and drafted)."""
        return self.n_tokens + len(self.draft)


def forward_passes(chunks: list[ScheduledChunk], streams: bool) -> list[list[ScheduledChunk]]:
    """Split a step's chunks into forward passes.

    With a KV stream per sequence the prompt chunks share one pass, then the decodes (held-back
    last prompt tokens among them) get a second: llama.cpp gives every token the same numbers
    however its sequence's prompt is cut or batched, except a sequence's last token, whose
    numbers depend on whether it is read alone. In a unified pool two sequences reading several
    tokens in one pass change each other's numbers, so each prompt chunk gets a pass of its own
    (the first one also carries the decodes): a seeded request samples the same tokens under
    any load. Decodes go in sequence id order: with streams llama.cpp splits a pass wherever the
    next id is not the last plus one.
    """
    decodes = sorted((c for c in chunks if c.n_fed == 1), key=lambda c: c.seq.seq_id)
    prompts = [c for c in chunks if c.n_fed > 1]
    if streams:
        return [p for p in (sorted(prompts, key=lambda c: c.seq.seq_id), decodes) if p]
    passes: list[list[ScheduledChunk]] = [decodes]
    for chunk in prompts:
        if any(c.n_fed > 1 for c in passes[-1]):
            passes.append([])
        passes[-1].append(chunk)
    return [p for p in passes if p]


def common_prefix(a: list[int], b: list[int], limit: int) -> int:
    n = min(len(a), len(b), limit)
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Scheduler:
    def __init__(
        self,
        max_sequences: int,
        cache_slots: int,
        kv_cells: int,
        token_budget: int,
        share: Callable[[int, int, int], None],
        forget: Callable[[int, int], None],
        reserved: dict[str, int] | None = None,
        streams: bool = False,
        last_token_alone: bool = False,
    ) -> None:
        self.reserved = {lane: n for lane, n in (reserved or {}).items() if n > 0}
        self.shared_capacity = max_sequences - sum(self.reserved.values())
        self._share = share  # (src_id, dst_id, n_tokens): dst gets src's first n cells
        self._forget = forget  # (seq_id, from_pos): drops a sequence id's KV cells from a position
        self.streams = streams  # a KV stream per sequence id; the cache holds idle streams
        # A prompt's last token is fed alone, in the decode pass after its prompt pass, never
        # inside a chunk (without flash attention its numbers depend on the rows read with it).
        self.last_token_alone = last_token_alone
        self.max_sequences = max_sequences
        self.cache_slots = cache_slots
        self.kv_cells = kv_cells
        self.token_budget = token_budget
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.cached: OrderedDict[int, Sequence] = OrderedDict()  # seq_id -> finished sequence
        n_ids = max_sequences if streams else max_sequences + cache_slots
        self._free_ids = list(range(n_ids - 1, -1, -1))
        self._admissions = 0
        self._last_admitted: dict[str | None, int] = {}  # tenant -> its latest admission

    @property
    def kv_used(self) -> int:
        holders = [*self.running, *self.cached.values()]
        return sum(s.n_past - s.shared_len for s in holders)

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def release(self, seq: Sequence, keep_cache: bool = True) -> None:
        """A sequence ended: keep its cells for prefix reuse, or drop them."""
        if seq in self.running:
            self.running.remove(seq)
            if keep_cache and self.cache_slots > 0 and seq.n_past > 0 and seq.group is None:
                self.cached[seq.seq_id] = seq
                if len(self.cached) > self.cache_slots:
                    self._evict_cached(keep=seq)
            else:
                self._drop(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)

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
        held_back = 1 if self.last_token_alone else 0
        # In a unified pool each chunk of several tokens costs a forward pass of its own (see
        # forward_passes): one decoding sequence's forced tokens go in whole, along with the
        # decodes, and the others' a token a step.
        whole_forced = len(self.running) if self.streams else 1
        # Then the tokens a grammar forced after a sampled one, then prompt chunks, oldest first.
        for seq in sorted(self.running, key=lambda s: not s.decoding):
            if seq.n_pending > 1 and budget > 0 and free_cells > 0:
                n = min(seq.n_pending - held_back, budget, free_cells)
                if seq.decoding:
                    n = n if whole_forced > 0 else 1
                    whole_forced -= 1
                chunks.append(ScheduledChunk(seq, n))
                budget -= n
                free_cells -= n
                # The held-back last token joins this step's decodes, which run after the
                # prompt passes (one prompt token alone is a decode already: it waits a step).
                if held_back and n > 1 and n == seq.n_pending - 1 and budget > 0 and free_cells:
                    chunks.append(ScheduledChunk(seq, 1))
                    budget -= 1
                    free_cells -= 1
        return chunks, preempted

    def gap_fillers(self, ids: list[int]) -> list[tuple[int, int]]:
        """(id, position) of a throwaway token for each id in the short gaps between the sorted
        ``ids`` of a decode pass, at the end of what that id's stream holds (the caller drops it
        after the pass). A gap with a full stream in it is left to split the pass."""
        holders = {s.seq_id: s for s in (*self.running, *self.cached.values())}
        per_stream = self.kv_cells // self.max_sequences
        fillers: list[tuple[int, int]] = []
        for low, high in itertools.pairwise(ids):
            gap = range(low + 1, high)
            if not 0 < len(gap) <= MAX_GAP_FILL:
                continue
            ends = [holders[i].n_past if i in holders else 0 for i in gap]
            if all(end < per_stream for end in ends):
                fillers.extend(zip(gap, ends))
        return fillers

    # --- admission and the prefix cache ----------------------------------------------------------
    def attach(self, seq: Sequence, seq_id: int) -> None:
        """Run a sequence the engine created itself (a beam) in a slot it was given."""
        seq.seq_id = seq_id
        seq.status = SequenceStatus.RUNNING
        self.running.append(seq)

    def free_ids(self, ids: list[int]) -> None:
        """Return reserved, never used sequence ids."""
        self._free_ids.extend(ids)
        ids.clear()

    def _lane_allows(self, seq: Sequence) -> bool:
        """Room for ``seq`` in its lane's reservation or in the shared pool."""
        if not self.reserved:
            return True
        used: dict[str | None, int] = {}
        for s in self.running:
            used[s.request.lane] = used.get(s.request.lane, 0) + 1
        lane = seq.request.lane
        if used.get(lane, 0) + seq.slots <= self.reserved.get(lane, 0):
            return True
        shared_used = sum(max(0, n - self.reserved.get(name, 0)) for name, n in used.items())
        own_spare = max(0, self.reserved.get(lane, 0) - used.get(lane, 0))
        return shared_used + seq.slots - own_spare <= self.shared_capacity

    def _slots_taken(self) -> int:
        """Running sequences plus the ids beam searches hold for beams not yet spawned."""
        groups = {id(s.group): s.group for s in self.running if s.group is not None}
        return len(self.running) + sum(len(g.reserved_ids) for g in groups.values())

    def _admission_order(self) -> list[Sequence]:
        """The waiting sequences: preempted ones (they ran before) first, then by how many
        sequences their tenant has running, fewest first, then by when their tenant was last
        admitted, longest ago first; arrival order otherwise."""
        running = Counter(s.request.tenant for s in self.running)
        last = self._last_admitted
        return sorted(self.waiting, key=lambda s: (
            s.scheduled_at is None, running[s.request.tenant], last.get(s.request.tenant, -1)))

    def _admitted(self, seq: Sequence) -> None:
        """Note when ``seq``'s tenant was last admitted (tenants with nothing left forgotten)."""
        self._admissions += 1
        self._last_admitted[seq.request.tenant] = self._admissions
        if len(self._last_admitted) > MAX_TENANTS_REMEMBERED:
            present = {s.request.tenant for s in (*self.waiting, *self.running)}
            self._last_admitted = {t: n for t, n in self._last_admitted.items() if t in present}

    def _next_admissible(self) -> Sequence | None:
        taken = self._slots_taken()
        for seq in self._admission_order():
            if taken + seq.slots > self.max_sequences:
                return None
            if self._lane_allows(seq):
                return seq
        return None

    def _admit(self) -> None:
        while (seq := self._next_admissible()) is not None:
            source, shared = self._best_prefix(seq)
            if self._worth_waiting(seq, shared):
                break
            if self.streams:
                self._admit_to_stream(seq, source, shared)
                continue
            need = seq.n_pending - shared + self._reserved()
            while self.kv_used + need > self.kv_cells and self._evict_cached(keep=source):
                pass
            if self.running and self.kv_used + need > self.kv_cells:
                break
            while len(self._free_ids) < seq.slots and self._evict_cached(keep=source):
                pass
            if len(self._free_ids) < seq.slots:
                break
            self.waiting.remove(seq)
            seq.seq_id = self._free_ids.pop()
            if seq.group is not None:
                seq.group.reserved_ids = [self._free_ids.pop() for _ in range(seq.slots - 1)]
            seq.status = SequenceStatus.RUNNING
            if source is not None and shared > 0:
                self._share(source.seq_id, seq.seq_id, shared)
                seq.n_past = seq.shared_len = seq.cached_prefix = shared
                seq.source = source
                source.children.append(seq)
                if source.seq_id in self.cached:
                    self.cached.move_to_end(source.seq_id)
            self.running.append(seq)
            self._admitted(seq)

    def _admit_to_stream(self, seq: Sequence, source: Sequence | None, shared: int) -> None:
        """Give ``seq`` a stream: a cached one it continues, a copy of a shared prefix, or a
        fresh one (the caller checked that a sequence slot is free)."""
        self.waiting.remove(seq)
        seq.status = SequenceStatus.RUNNING
        cached = source is not None and source.seq_id in self.cached
        if source is not None and cached and self._takes_over(source, shared):
            del self.cached[source.seq_id]
            seq.seq_id, source.seq_id = source.seq_id, -1
            self._forget(seq.seq_id, shared)
        elif source is not None and shared >= MIN_STREAM_COPY:
            seq.seq_id = self._take_id(keep=source)
            self._share(source.seq_id, seq.seq_id, shared)
            if cached:
                self.cached.move_to_end(source.seq_id)
        else:
            seq.seq_id, shared = self._take_id(), 0
        seq.n_past = seq.cached_prefix = shared
        if seq.group is not None:
            seq.group.reserved_ids = [self._take_id() for _ in range(seq.slots - 1)]
        self.running.append(seq)
        self._admitted(seq)

    def _takes_over(self, cached: Sequence, shared: int) -> bool:
        """Whether a prompt sharing ``shared`` tokens with a cached sequence takes its stream
        (cutting the rest) rather than get a copy: when it continues that sequence, when keeping
        it would evict another cached stream for less than the prompt reuses, or when no other
        id can be had."""
        lost = cached.n_past - shared
        return (
            lost < MIN_STREAM_COPY
            or (not self._free_ids and shared >= lost)
            or not self._spare_id(cached)
        )

    def _spare_id(self, keep: Sequence) -> bool:
        """A stream id is free or can be freed without evicting ``keep``."""
        return bool(self._free_ids) or any(s is not keep for s in self.cached.values())

    def _take_id(self, keep: Sequence | None = None) -> int:
        """A free stream id, next to a running one where possible (llama.cpp batches only
        consecutive ids together); evicts the least recently used cached stream if none is free."""
        if not self._free_ids:
            self._evict_cached(keep=keep)
        running = {s.seq_id for s in self.running}
        best = min(self._free_ids, key=lambda i: (i - 1 not in running and i + 1 not in running, i))
        self._free_ids.remove(best)
        return best

    def _best_prefix(self, seq: Sequence) -> tuple[Sequence | None, int]:
        """The running or cached sequence sharing the longest prefix (at least one token must be
        fed, so the whole prompt never counts). With streams a cached one wins a tie: taking it
        over costs no copy."""
        best: Sequence | None = None
        best_len = 0
        limit = len(seq.tokens) - 1
        if seq.group is not None:  # beams move their cells around: they neither lend nor borrow
            return None, 0
        if seq.params.prompt_logprobs is not None:  # it needs every prompt position's logits
            return None, 0
        holders = [*self.cached.values(), *self.running] if self.streams else [
            *self.running, *self.cached.values()]
        for holder in holders:
            if holder.group is not None:
                continue
            n = common_prefix(seq.tokens, holder.tokens, min(limit, holder.n_past))
            if n > best_len:
                best, best_len = holder, n
        return best, best_len

    def _worth_waiting(self, seq: Sequence, shared_now: int) -> bool:
        """Another running sequence is still reading a prompt this one shares: wait for it."""
        limit = len(seq.tokens) - 1
        if seq.params.prompt_logprobs is not None:  # it borrows no prefix (_best_prefix)
            return False
        for other in self.running:
            if other.n_pending > 1:
                later = common_prefix(seq.tokens, other.tokens, min(limit, len(other.tokens)))
                if later - shared_now >= MIN_DEFER_GAIN and later > other.n_past:
                    return True
        return False

    def _reserved(self) -> int:
        """Cells the running sequences need for their pending tokens and next decode."""
        return sum(max(s.n_pending, 1) for s in self.running)

    def _evict_cached(self, keep: Sequence | None = None) -> bool:
        for seq_id, seq in self.cached.items():
            if seq is not keep:
                del self.cached[seq_id]
                self._drop(seq)
                return True
        return False

    def _drop(self, seq: Sequence) -> None:
        """Free a sequence's id and cells; its largest child inherits the cells it shares."""
        children = [c for c in seq.children if c.source is seq]
        parent = seq.source
        if parent is not None and seq in parent.children:
            parent.children.remove(seq)
        if children:
            heir = max(children, key=lambda c: c.shared_len)
            heir.shared_len = min(heir.shared_len, seq.shared_len)
            heir.source = parent
            if parent is not None:
                parent.children.append(heir)
            for child in children:
                if child is not heir:
                    child.source = heir
                    heir.children.append(child)
        seq.children = []
        seq.source = None
        seq.shared_len = 0
        self._forget(seq.seq_id, 0)
        self._free_ids.append(seq.seq_id)
        seq.seq_id = -1

    def _make_room_for_decodes(self) -> list[Sequence]:
        preempted: list[Sequence] = []
        while True:
            decoding = sum(1 for s in self.running if s.n_pending == 1 or s.decoding)
            if self.kv_used + decoding <= self.kv_cells:
                break
            if self._evict_cached():
                continue
            victims = [s for s in self.running if s.group is None]
            if len(self.running) <= 1 or not victims:
                break
            victim = victims[-1]
            self.running.remove(victim)
            self._drop(victim)
            preempted.append(victim)
            victim.n_past = 0
            victim.status = SequenceStatus.WAITING
            self.waiting.appendleft(victim)
        return preempted
