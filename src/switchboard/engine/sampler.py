"""Token sampling over a batch of logits rows with NumPy.

Each row belongs to one sequence with its own ``SamplingParams`` and its own random generator
(seeded from the request's ``seed`` and choice index), so a seeded request samples the same tokens
whatever else shares the batch. Log-probabilities reported to clients are those of the model's raw
distribution, as llama.cpp and vLLM report them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from switchboard.engine.request import SamplingParams

_NEG_INF = np.float32(-np.inf)
_TOP_P_CANDIDATES = 1024  # top-p looks at this many best tokens first, the whole vocab if needed


@dataclass
class SequenceSampling:
    """Per-sequence sampling state the sampler reads and updates."""

    params: SamplingParams
    rng: np.random.Generator
    n_vocab: int
    prompt_tokens: tuple[int, ...] = ()
    generated: int = 0
    counts: np.ndarray | None = field(default=None, repr=False)  # output token counts
    seen: np.ndarray | None = field(default=None, repr=False)  # prompt or output token seen

    def __post_init__(self) -> None:
        if self.params.penalized:
            self.counts = np.zeros(self.n_vocab, dtype=np.int32)
            self.seen = np.zeros(self.n_vocab, dtype=bool)
            prompt = np.fromiter(self.prompt_tokens, dtype=np.int64)
            self.seen[prompt[(prompt >= 0) & (prompt < self.n_vocab)]] = True

    def accept(self, token: int) -> None:
        self.generated += 1
        if self.counts is not None and self.seen is not None:
            self.counts[token] += 1
            self.seen[token] = True


def make_rng(seed: int | None, offset: int) -> np.random.Generator:
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, offset])


def log_softmax(rows: np.ndarray) -> np.ndarray:
    shifted = rows - rows.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class Sampler:
    """Chooses the next token of every sequence in a step."""

    def __init__(self, n_vocab: int, eog_token_ids: list[int]) -> None:
        self.n_vocab = n_vocab
        self.eog = np.asarray(sorted(eog_token_ids), dtype=np.int64)

    def sample(self, logits: np.ndarray, seqs: list[SequenceSampling]) -> np.ndarray:
        """Return one token id per row of ``logits`` (shape ``[len(seqs), n_vocab]``).

        ``logits`` is modified in place.
        """
        for row, seq in zip(logits, seqs):
            self.process(row, seq)
        tokens = np.empty(len(seqs), dtype=np.int64)
        greedy = np.fromiter((s.params.greedy for s in seqs), dtype=bool, count=len(seqs))
        if greedy.any():
            tokens[greedy] = logits[greedy].argmax(axis=-1)
        for i in np.flatnonzero(~greedy):
            tokens[i] = self._draw(logits[i], seqs[i])
        return tokens

    def process(self, row: np.ndarray, seq: SequenceSampling) -> None:
        """Logit processors: bias, penalties, and the end-of-sequence rules."""
        p = seq.params
        if p.logit_bias:
            ids = np.fromiter(p.logit_bias.keys(), dtype=np.int64)
            bias = np.fromiter(p.logit_bias.values(), dtype=np.float32)
            ok = ids < self.n_vocab
            row[ids[ok]] += bias[ok]
        if seq.counts is not None and seq.seen is not None:
            if p.repetition_penalty != 1.0:
                seen = row[seq.seen]
                row[seq.seen] = np.where(
                    seen > 0, seen / p.repetition_penalty, seen * p.repetition_penalty
                )
            if p.frequency_penalty or p.presence_penalty:
                row -= p.frequency_penalty * seq.counts + p.presence_penalty * (seq.counts > 0)
        if p.ignore_eos or seq.generated < p.min_tokens:
            row[self.eog] = _NEG_INF
        if p.stop_token_ids and seq.generated < p.min_tokens:
            ids = np.asarray(p.stop_token_ids, dtype=np.int64)
            row[ids[ids < self.n_vocab]] = _NEG_INF

    def _draw(self, row: np.ndarray, seq: SequenceSampling) -> int:
        p = seq.params
        scaled = row / np.float32(p.temperature)
        if 0 < p.top_k < self.n_vocab:
            kth = np.partition(scaled, -p.top_k)[-p.top_k]
            scaled[scaled < kth] = _NEG_INF
        scaled -= scaled.max()
        probs = np.exp(scaled, dtype=np.float64)
        probs /= probs.sum()
        if p.min_p > 0.0:
            probs[probs < p.min_p * probs.max()] = 0.0
        u = seq.rng.random()
        if p.top_p < 1.0:
            order = self._top_p_order(probs, p.top_p)
            kept = probs[order]
            cumulative = np.cumsum(kept)
            cut = int(np.searchsorted(cumulative, p.top_p * cumulative[-1])) + 1
            kept = kept[:cut]
            cumulative = cumulative[:cut]
            index = int(np.searchsorted(cumulative, u * cumulative[-1], side="right"))
            return int(order[min(index, cut - 1)])
        cumulative = np.cumsum(probs)
        index = int(np.searchsorted(cumulative, u * cumulative[-1], side="right"))
        return min(index, self.n_vocab - 1)

    @staticmethod
    def _top_p_order(probs: np.ndarray, top_p: float) -> np.ndarray:
        """Token ids by descending probability, enough of them to hold ``top_p`` of the mass."""
        total = probs.sum()
        if len(probs) > _TOP_P_CANDIDATES:
            best = np.argpartition(probs, -_TOP_P_CANDIDATES)[-_TOP_P_CANDIDATES:]
            if probs[best].sum() >= top_p * total:
                return best[np.argsort(-probs[best], kind="stable")]
        return np.argsort(-probs, kind="stable")


def top_logprobs(logprob_row: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most likely token ids and their log-probabilities, best first."""
    if k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    ids = np.argpartition(logprob_row, -k)[-k:]
    ids = ids[np.argsort(-logprob_row[ids], kind="stable")]
    return ids, logprob_row[ids]
