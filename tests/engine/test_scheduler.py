"""Scheduler behaviour without a model: joining, budgets, preemption, prefix sharing, accounting."""

from __future__ import annotations

from switchboard.engine.request import GenerationRequest, SamplingParams
from switchboard.engine.scheduler import MIN_DEFER_GAIN, Scheduler
from switchboard.engine.sequence import Sequence


class FakeKV:
    """Tracks which sequence ids hold which positions, as llama.cpp's unified cache would."""

    def __init__(self) -> None:
        self.cells: dict[int, set[int]] = {}  # (cell id) -> seq ids; cell = (owner chain, pos)
        self.seq_pos: dict[int, dict[int, int]] = {}  # seq -> pos -> cell
        self.next_cell = 0

    def share(self, src: int, dst: int, n: int) -> None:
        for pos in range(n):
            cell = self.seq_pos[src][pos]
            self.seq_pos.setdefault(dst, {})[pos] = cell
            self.cells[cell].add(dst)

    def forget(self, seq: int, from_pos: int = 0) -> None:
        held = self.seq_pos.get(seq, {})
        for pos in [p for p in held if p >= from_pos]:
            cell = held.pop(pos)
            self.cells[cell].discard(seq)
            if not self.cells[cell]:
                del self.cells[cell]

    def feed(self, seq: int, pos: int) -> None:
        cell = self.next_cell
        self.next_cell += 1
        self.cells[cell] = {seq}
        self.seq_pos.setdefault(seq, {})[pos] = cell

    @property
    def used(self) -> int:
        return len(self.cells)


def make(tokens: list[int]) -> Sequence:
    req = GenerationRequest(tuple(tokens), SamplingParams(max_tokens=100))
    return Sequence(req, lambda out: None, n_vocab=100, max_new_tokens=100)


def scheduler(kv: FakeKV, cells: int = 1000, budget: int = 64, slots: int = 4) -> Scheduler:
    return Scheduler(
        max_sequences=4, cache_slots=slots, kv_cells=cells, token_budget=budget,
        share=kv.share, forget=kv.forget,
    )


def step(s: Scheduler, kv: FakeKV, sample: int = 7) -> list:
    chunks, _ = s.schedule()
    for c in chunks:
        for i in range(c.n_tokens):
            kv.feed(c.seq.seq_id, c.seq.n_past + i)
    for c in chunks:
        done = c.completes
        c.seq.n_past += c.n_tokens
        if done:
            c.seq.tokens.append(sample)
    assert s.kv_used == kv.used  # the scheduler's accounting equals the cells really held
    return chunks


def test_prompts_are_chunked_and_decodes_go_first() -> None:
    kv = FakeKV()
    s = scheduler(kv, budget=16)
    a = make(list(range(10)))
    s.add(a)
    step(s, kv)  # a's whole prompt
    b = make(list(range(50, 90)))
    s.add(b)
    chunks = step(s, kv)
    assert [(c.seq, c.n_tokens) for c in chunks] == [(a, 1), (b, 15)]


def test_prefix_is_shared_not_recomputed_and_accounting_holds() -> None:
    kv = FakeKV()
    s = scheduler(kv)
    system = list(range(100, 140))
    a = make(system + [1, 2, 3])
    s.add(a)
    step(s, kv)
    s.release(a)  # finished: kept in the cache
    assert s.cached
    b = make(system + [9, 9])
    s.add(b)
    chunks = step(s, kv)
    assert b.cached_prefix == 40 and chunks[0].n_tokens == 2
    c = make(system + [1, 2, 3, 4])
    s.add(c)
    step(s, kv)
    assert c.cached_prefix == 43  # a's whole prompt, from the cache
    s.release(b, keep_cache=False)
    s.release(c, keep_cache=False)
    for seq in list(s.cached.values()):
        s.release(seq)
    assert s.kv_used == kv.used


def test_source_dropped_while_children_share_its_cells() -> None:
    kv = FakeKV()
    s = scheduler(kv, slots=1)
    a = make(list(range(30)))
    s.add(a)
    step(s, kv)
    s.release(a)
    b = make(list(range(20)) + [99])
    c = make(list(range(25)) + [98])
    s.add(b)
    s.add(c)
    step(s, kv)
    # a is evicted when a new finished sequence takes the single cache slot
    s.release(b)
    assert a.seq_id == -1 and a not in s.cached.values()
    step(s, kv)
    assert s.kv_used == kv.used


def test_later_sequence_waits_for_a_shared_prompt_being_read() -> None:
    kv = FakeKV()
    s = scheduler(kv, budget=32)
    prompt = list(range(200, 300))
    first, second = make(prompt), make(prompt)
    s.add(first)
    s.add(second)
    step(s, kv)
    assert second in s.waiting  # first is still reading the shared prompt
    while first.n_pending > 1:
        step(s, kv)
    step(s, kv)
    assert second in s.running and second.cached_prefix >= 99 - MIN_DEFER_GAIN


def test_kv_full_preempts_the_youngest() -> None:
    kv = FakeKV()
    s = scheduler(kv, cells=40, budget=64, slots=0)
    a, b = make(list(range(18))), make(list(range(50, 68)))
    s.add(a)
    s.add(b)
    step(s, kv)
    preempted = []
    for _ in range(6):
        chunks, out = s.schedule()
        preempted += out
        for c in chunks:
            kv.feed(c.seq.seq_id, c.seq.n_past)
            c.seq.n_past += 1
            c.seq.tokens.append(1)
    assert preempted == [b] and b in s.waiting and b.n_past == 0


def test_reserved_lane_capacity_is_kept_for_its_lane() -> None:
    """A dedicated lane keeps 2 of 4 sequences; shared traffic fills only the other 2 and never
    blocks the dedicated request queued behind it. The lane may also use free shared slots."""
    kv = FakeKV()
    sched = Scheduler(max_sequences=4, cache_slots=0, kv_cells=1000, token_budget=64,
                      share=kv.share, forget=kv.forget, reserved={"ded": 2})

    def lane_seq(lane: str | None, first: int) -> Sequence:
        req = GenerationRequest((first, 2, 3), SamplingParams(max_tokens=10), lane=lane)
        return Sequence(req, lambda out: None, n_vocab=100, max_new_tokens=10)

    shared = [lane_seq(None, 10 + i) for i in range(3)]
    for seq in shared:
        sched.add(seq)
    sched.schedule()
    assert sched.running == shared[:2] and sched.waiting[0] is shared[2]
    dedicated = [lane_seq("ded", 20 + i) for i in range(3)]
    for seq in dedicated:
        sched.add(seq)
    sched.schedule()
    assert sched.running == [*shared[:2], *dedicated[:2]]  # the third waits: engine full
    sched.release(shared[0], keep_cache=False)
    sched.schedule()
    assert shared[2] in sched.running, "a freed shared slot goes to the oldest shared request"

    sched.release(shared[1], keep_cache=False)
    sched.release(shared[2], keep_cache=False)
    sched.schedule()
    assert dedicated[2] in sched.running, "the lane uses shared slots nobody else wants"


def tenant_seq(tenant: str | None, first: int) -> Sequence:
    req = GenerationRequest((first, 2, 3), SamplingParams(max_tokens=10), tenant=tenant)
    return Sequence(req, lambda out: None, n_vocab=100, max_new_tokens=10)


def test_tenants_take_turns_for_free_slots() -> None:
    """One tenant queues six sequences before another's one: the other is admitted as soon as
    a slot is free, not after all six; with one slot, tenants alternate."""
    kv = FakeKV()
    sched = Scheduler(max_sequences=2, cache_slots=0, kv_cells=1000, token_budget=64,
                      share=kv.share, forget=kv.forget)
    flood = [tenant_seq("a", 10 + i) for i in range(6)]
    for seq in flood:
        sched.add(seq)
    sched.schedule()
    assert sched.running == flood[:2]
    late = tenant_seq("b", 50)
    sched.add(late)
    sched.release(flood[0], keep_cache=False)
    sched.schedule()
    assert sched.running == [flood[1], late]

    single = Scheduler(max_sequences=1, cache_slots=0, kv_cells=1000, token_budget=64,
                       share=kv.share, forget=kv.forget)
    queued = [tenant_seq("a", 60 + i) for i in range(3)] + [tenant_seq("b", 70 + i)
                                                             for i in range(2)]
    for seq in queued:
        single.add(seq)
    order = []
    while single.waiting or single.running:
        single.schedule()
        (seq,) = single.running
        order.append(seq.request.tenant)
        single.release(seq, keep_cache=False)
    assert order == ["a", "b", "a", "b", "a"]


def test_without_tenants_admission_stays_in_arrival_order() -> None:
    kv = FakeKV()
    sched = Scheduler(max_sequences=1, cache_slots=0, kv_cells=1000, token_budget=64,
                      share=kv.share, forget=kv.forget)
    queued = [tenant_seq(None, 10 + i) for i in range(4)]
    for seq in queued:
        sched.add(seq)
    order = []
    while sched.waiting or sched.running:
        sched.schedule()
        order.append(sched.running[0])
        sched.release(sched.running[0], keep_cache=False)
    assert order == queued
