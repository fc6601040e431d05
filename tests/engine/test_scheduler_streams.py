"""The scheduler with a KV stream per sequence: taking over cached streams, copying shared
prefixes, choosing ids llama.cpp can batch together, and cells that always hold each sequence's
own tokens."""

from __future__ import annotations

import random

from switchboard.engine.beam import BeamSearchParams, BeamState
from switchboard.engine.request import GenerationRequest, SamplingParams
from switchboard.engine.scheduler import MIN_STREAM_COPY, ScheduledChunk, Scheduler, forward_passes
from switchboard.engine.sequence import BeamGroup, Sequence

MAX_SEQUENCES = 4


class FakeStreams:
    """What each of llama.cpp's per-sequence KV streams holds: the token at each position."""

    def __init__(self) -> None:
        self.streams: dict[int, list[int]] = {i: [] for i in range(MAX_SEQUENCES)}
        self.copies = 0

    def share(self, src: int, dst: int, n: int) -> None:
        self.streams[dst] = list(self.streams[src][:n])  # a whole-stream copy, cut to n
        self.copies += 1

    def forget(self, seq: int, from_pos: int = 0) -> None:
        del self.streams[seq][from_pos:]

    def feed(self, seq: int, pos: int, token: int) -> None:
        assert pos == len(self.streams[seq]), "a stream is written in order"
        self.streams[seq].append(token)


def make(tokens: list[int], max_tokens: int = 100) -> Sequence:
    req = GenerationRequest(tuple(tokens), SamplingParams(max_tokens=max_tokens))
    return Sequence(req, lambda out: None, n_vocab=1000, max_new_tokens=max_tokens)


def scheduler(kv: FakeStreams, budget: int = 64, last_token_alone: bool = False) -> Scheduler:
    return Scheduler(
        max_sequences=MAX_SEQUENCES, cache_slots=MAX_SEQUENCES, kv_cells=MAX_SEQUENCES * 1000,
        token_budget=budget, share=kv.share, forget=kv.forget, streams=True,
        last_token_alone=last_token_alone,
    )


def check(s: Scheduler, kv: FakeStreams) -> None:
    """Every running or cached sequence's stream holds exactly its first ``n_past`` tokens."""
    holders = [*s.running, *s.cached.values()]
    ids = [h.seq_id for h in holders]
    assert len(set(ids)) == len(ids) and all(0 <= i < MAX_SEQUENCES for i in ids)
    for h in holders:
        assert kv.streams[h.seq_id] == h.tokens[: h.n_past]
    assert s.kv_used == sum(len(kv.streams[i]) for i in ids)


def step(s: Scheduler, kv: FakeStreams, sample: int = 7) -> list:
    chunks, preempted = s.schedule()
    assert preempted == []  # every stream has room for its sequence's whole context
    for forward_pass in forward_passes(chunks, streams=True):  # in order, as the engine runs them
        fillers = []
        if all(c.n_tokens == 1 for c in forward_pass):  # the decode pass: gaps filled, as Engine
            fillers = s.gap_fillers([c.seq.seq_id for c in forward_pass])
        for c in forward_pass:
            for i in range(c.n_tokens):
                kv.feed(c.seq.seq_id, c.seq.n_past + i, c.seq.tokens[c.seq.n_past + i])
        for seq_id, position in fillers:  # written at the stream's end, then dropped
            kv.feed(seq_id, position, -1)
            kv.forget(seq_id, position)
        for c in forward_pass:
            done = c.completes
            c.seq.n_past += c.n_tokens
            if done:
                c.seq.tokens.append(sample)
    check(s, kv)
    return chunks


def run_until(s: Scheduler, kv: FakeStreams, seq: Sequence, generated: int) -> None:
    while seq.n_generated < generated:
        step(s, kv)


def test_the_next_turn_takes_over_its_conversations_stream_without_a_copy() -> None:
    kv = FakeStreams()
    s = scheduler(kv)
    first = make(list(range(100, 140)))
    s.add(first)
    run_until(s, kv, first, 5)
    s.release(first)
    history = first.tokens[: first.n_past]
    follow_up = make([*history, 500, 501, 502])
    s.add(follow_up)
    step(s, kv)
    assert follow_up.seq_id == 0 and follow_up.cached_prefix == len(history)
    assert kv.copies == 0 and not s.cached


def test_a_prompt_shared_with_a_running_sequence_is_copied_once_read() -> None:
    kv = FakeStreams()
    s = scheduler(kv)
    prompt = list(range(200, 260))
    a, b = make([*prompt, 1]), make([*prompt, 2])
    s.add(a)
    s.add(b)
    step(s, kv)
    assert a in s.running and b in s.waiting  # b waits for a to read the shared part
    step(s, kv)
    assert b in s.running and b.seq_id != a.seq_id
    assert kv.copies == 1 and b.cached_prefix == len(prompt)


def test_a_cached_stream_sharing_little_is_kept_while_an_id_is_free() -> None:
    kv = FakeStreams()
    s = scheduler(kv)
    system = list(range(300, 300 + MIN_STREAM_COPY))
    old = make([*system, *range(600, 700)])  # a long conversation behind the system prompt
    s.add(old)
    run_until(s, kv, old, 1)
    s.release(old)
    new = make([*system, 9, 9, 9])
    s.add(new)
    step(s, kv)
    assert new.seq_id != old.seq_id and old.seq_id in s.cached  # copied, not taken over
    assert new.cached_prefix == len(system) and kv.copies == 1


def test_a_cached_stream_is_taken_over_when_no_other_id_is_left() -> None:
    kv = FakeStreams()
    s = scheduler(kv)
    system = list(range(300, 300 + MIN_STREAM_COPY))
    busy = [make([i, i + 1, i + 2]) for i in range(10, 40, 10)]
    old = make([*system, *range(600, 700)])
    for seq in [old, *busy]:
        s.add(seq)
    run_until(s, kv, old, 1)
    s.release(old)  # three running, one cached: no free id
    new = make([*system, 9, 9, 9])
    s.add(new)
    step(s, kv)
    assert new.seq_id == 0 and not s.cached and kv.copies == 0
    assert new.cached_prefix == len(system)


def test_a_turn_that_diverges_late_takes_its_stream_rather_than_evict_another() -> None:
    kv = FakeStreams()
    s = scheduler(kv)
    history, other = make(list(range(100, 160))), make(list(range(500, 540)))
    busy = [make([i, i + 1]) for i in (10, 20)]
    for seq in [history, other, *busy]:
        s.add(seq)
    run_until(s, kv, history, 1)
    s.release(history)
    s.release(other)  # two running, two cached: no free id
    cut = 40  # shares 40 tokens, would cut the other 20: a late divergence
    turn = make([*history.tokens[:cut], *range(700, 730)])
    s.add(turn)
    step(s, kv)
    assert turn.seq_id == 0 and turn.cached_prefix == cut and kv.copies == 0
    assert list(s.cached.values()) == [other]


def test_a_new_sequence_takes_a_free_id_next_to_a_running_one() -> None:
    kv = FakeStreams()
    s = scheduler(kv)
    a, b, c = make([1, 2]), make([3, 4]), make([5, 6])
    for seq in (a, b, c):
        s.add(seq)
    step(s, kv)
    assert [a.seq_id, b.seq_id, c.seq_id] == [0, 1, 2]
    s.release(a, keep_cache=False)
    s.release(b, keep_cache=False)  # running: id 2; free: 0, 1, 3
    d = make([7, 8])
    s.add(d)
    step(s, kv)
    assert d.seq_id == 1  # next to 2 (0 is lower but would split llama.cpp's batch)


def test_a_prompts_last_token_is_fed_alone_with_the_decodes_after_its_prompt_pass() -> None:
    kv = FakeStreams()
    s = scheduler(kv, budget=40, last_token_alone=True)
    a = make(list(range(100, 110)))
    s.add(a)
    first = [(c.seq, c.n_tokens) for c in step(s, kv)]
    assert first == [(a, 9), (a, 1)]  # 9 prompt tokens, then the last one in the decode pass
    assert a.n_generated == 1  # sampled in the same step
    b = make(list(range(200, 260)))
    s.add(b)
    chunks = [(c.seq, c.n_tokens) for c in step(s, kv)]
    assert chunks == [(a, 1), (b, 39)]  # the budget ran out before b's last token
    assert [(c.seq, c.n_tokens) for c in step(s, kv)] == [(a, 1), (b, 20), (b, 1)]
    assert b.n_generated == 1
    c = make([300, 301])  # one prompt token before the last: a decode already, so a step apart
    s.add(c)
    assert [(ch.seq, ch.n_tokens) for ch in step(s, kv)] == [(a, 1), (b, 1), (c, 1)]
    assert c.n_generated == 0
    step(s, kv)
    assert c.n_generated == 1


def test_prompts_share_a_pass_before_the_decodes_all_in_id_order() -> None:
    seqs = [make([1, 2, 3]) for _ in range(6)]
    for seq, seq_id in zip(seqs, (3, 0, 2, 1, 4, 5)):
        seq.seq_id = seq_id
    chunks = [ScheduledChunk(seqs[0], 1), ScheduledChunk(seqs[1], 1), ScheduledChunk(seqs[4], 5),
              ScheduledChunk(seqs[3], 1), ScheduledChunk(seqs[2], 8), ScheduledChunk(seqs[5], 2),
              ScheduledChunk(seqs[5], 1)]
    shape = [[(c.seq.seq_id, c.n_tokens) for c in p] for p in forward_passes(chunks, True)]
    assert shape == [[(2, 8), (4, 5), (5, 2)], [(0, 1), (1, 1), (3, 1), (5, 1)]]
    unified = [[(c.seq.seq_id, c.n_tokens) for c in p] for p in forward_passes(chunks[:5], False)]
    assert unified == [[(0, 1), (1, 1), (3, 1), (4, 5)], [(2, 8)]]  # a prompt per pass


def test_ids_held_for_beams_not_yet_spawned_are_not_given_away() -> None:
    kv = FakeStreams()
    s = scheduler(kv)
    search = make([1, 2, 3])
    state = BeamState(BeamSearchParams(width=3, n=1), max_new_tokens=5, ends=frozenset())
    search.group = BeamGroup(state, owner=search, beams=[search])
    others = [make([10 + i]) for i in range(2)]
    for seq in (search, *others):
        s.add(seq)
    step(s, kv)
    assert len(search.group.reserved_ids) == 2 and others[0] in s.running
    assert others[1] in s.waiting  # 1 running beam + 2 held ids + 1 other = 4 sequences
    ids = {search.seq_id, others[0].seq_id, *search.group.reserved_ids}
    assert ids == set(range(MAX_SEQUENCES))


def test_random_traffic_keeps_every_stream_exact() -> None:
    rng = random.Random(7)
    kv = FakeStreams()
    s = scheduler(kv, budget=24)
    prefixes = [list(range(1000 * k, 1000 * k + rng.randrange(5, 60))) for k in range(1, 4)]
    history: list[list[int]] = []
    for _ in range(400):
        if rng.random() < 0.3 and len(s.waiting) < 6:
            turn = history and rng.random() < 0.5  # a conversation's next turn
            base = rng.choice(history) if turn else rng.choice(prefixes)
            s.add(make([*base, *(rng.randrange(1, 999) for _ in range(rng.randrange(1, 9)))],
                       max_tokens=rng.randrange(1, 12)))
        step(s, kv, sample=rng.randrange(1, 999))
        for seq in list(s.running):
            if seq.n_generated >= seq.max_new_tokens:
                history.append(seq.tokens[: seq.n_past])
                s.release(seq, keep_cache=rng.random() < 0.8)
    assert kv.copies > 0 and any(len(h) > 0 for h in history)


def test_short_gaps_between_decoding_ids_get_throwaway_tokens_at_their_streams_ends() -> None:
    kv = FakeStreams()
    s = scheduler(kv)  # 4 streams of 1,000 cells
    seqs = [make(list(range(100 * i, 100 * i + 5))) for i in range(4)]
    for seq in seqs:
        s.add(seq)
    step(s, kv)
    assert [q.seq_id for q in seqs] == [0, 1, 2, 3]
    s.release(seqs[1])  # cached: its stream holds its 5 prompt tokens
    s.release(seqs[2], keep_cache=False)  # free: an empty stream
    assert s.gap_fillers([0, 3]) == [(1, 5), (2, 0)]
    assert s.gap_fillers([0, 1, 3]) == [(2, 0)]
    seqs[1].n_past = 1000  # a full stream cannot take another token: the pass splits there
    assert s.gap_fillers([0, 3]) == []
    assert s.gap_fillers([0]) == [] and s.gap_fillers([]) == []
