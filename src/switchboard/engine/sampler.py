"""Token sampling over a batch of logits rows with NumPy.

Each row belongs to one sequence with its own ``SamplingParams`` and its own random generator
(seeded from the request's ``seed`` and choice index), so a seeded request samples the same tokens
whatever else shares the batch. Log-probabilities reported to clients are those of the model's raw
distribution, as llama.cpp and vLLM report them.

A row whose scores are not numbers, or +inf, after the logit processors raises
``NonFiniteScores`` instead of yielding an arbitrary token; the engine then samples the batch row by
row, so that only the sequence at fault ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from switchboard.engine.request import SamplingParams

_NEG_INF = np.float32(-np.inf)
_TOP_P_CANDIDATES = 1024  # top-p looks at this many best tokens first, the whole vocab if needed
_BLOCK = 256  # inverse-CDF block size


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


class NonFiniteScores(ValueError):
    """A row's next-token scores hold NaN or +inf: no token can be drawn from it."""

    def __init__(self) -> None:
        super().__init__("the next-token scores are not finite numbers")


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

        ``logits`` is modified in place. Temperature, softmax, min-p and the final draw run on
        all sampled rows at once; only top-k / top-p rows need a per-row partial sort.
        """
        for row, seq in zip(logits, seqs):
            self.process(row, seq)
        tokens = np.empty(len(seqs), dtype=np.int64)
        greedy = np.fromiter((s.params.greedy for s in seqs), dtype=bool, count=len(seqs))
        if greedy.any():
            picked = logits[greedy].argmax(axis=-1)
            # argmax returns the first NaN if a row holds one: the picked value tells.
            if not (logits[np.flatnonzero(greedy), picked] < np.inf).all():
                raise NonFiniteScores()
            tokens[greedy] = picked
        drawn = np.flatnonzero(~greedy)
        if len(drawn) == len(seqs):
            tokens[:] = self._draw(seqs, logits)
        elif len(drawn):
            tokens[drawn] = self._draw([seqs[i] for i in drawn], logits[drawn])
        return tokens

    def _draw(self, seqs: list[SequenceSampling], logits: np.ndarray) -> np.ndarray:
        temps = np.array([s.params.temperature for s in seqs], dtype=np.float32)
        scaled = np.divide(logits, temps[:, None], out=logits)
        peak = scaled.max(axis=1, keepdims=True)
        if np.isnan(peak).any() or (peak == np.inf).any():
            raise NonFiniteScores()
        u = np.array([s.rng.random() for s in seqs])  # one draw per sequence per step
        out = np.empty(len(seqs), dtype=np.int64)
        narrowed = np.array([self._narrows(s.params) for s in seqs], dtype=bool)
        for i in np.flatnonzero(narrowed):  # top-k / min-p: a few candidates, drawn among
            out[i] = self._draw_candidates(scaled[i], float(peak[i, 0]), seqs[i].params, u[i])
        rest = np.flatnonzero(~narrowed)
        if not len(rest):
            return out
        probs = scaled[rest]
        probs -= peak[rest]
        probs = np.exp(probs, out=probs)  # unnormalized: every rule below is scale-free
        nucleus = np.array([seqs[i].params.top_p < 1.0 for i in rest], dtype=bool)
        for j in np.flatnonzero(nucleus):
            out[rest[j]] = self._draw_top_p(probs[j], seqs[rest[j]].params.top_p, u[rest[j]])
        plain = np.flatnonzero(~nucleus)
        if len(plain) == len(rest):
            out[rest] = self._inverse_cdf(probs, u[rest])
        elif len(plain):
            out[rest[plain]] = self._inverse_cdf(probs[plain], u[rest[plain]])
        return out

    def _narrows(self, p: SamplingParams) -> bool:
        """Whether top-k or min-p leave a short list of candidates to draw among."""
        return 0 < p.top_k <= _TOP_P_CANDIDATES or p.min_p > 0.0

    def _draw_candidates(self, row: np.ndarray, peak: float, p: SamplingParams,
                         u: float) -> int:
        """Draw from one scaled row where top-k and / or min-p keep few tokens: the same
        distribution as filtering the whole vocabulary, computed on the survivors only (min-p
        keeps scores within ``log(min_p)`` of the best, top-k the ``k`` best, then top-p the
        most likely of those holding ``top_p`` of their mass)."""
        ids = np.flatnonzero(row >= peak + np.log(p.min_p)) if p.min_p > 0.0 else None
        k = p.top_k
        if 0 < k < self.n_vocab and (ids is None or len(ids) > k):
            if ids is None:
                ids = np.argpartition(row, -k)[-k:]
            else:
                ids = ids[np.argpartition(row[ids], -k)[-k:]]
        assert ids is not None
        ids = ids[np.argsort(-row[ids], kind="stable")]  # best first
        return _draw_sorted(ids, np.exp(row[ids] - peak), p.top_p, u)

    def _inverse_cdf(self, probs: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Token whose cumulative probability first exceeds ``u`` (per row), in two levels:
        blocks of ``_BLOCK`` tokens first, then within the chosen block. Same distribution as
        one cumulative sum over the vocabulary, at a fraction of its cost."""
        n, vocab = probs.shape
        pad = (-vocab) % _BLOCK
        if pad:
            probs = np.pad(probs, ((0, 0), (0, pad)))
        blocks = probs.reshape(n, -1, _BLOCK)
        block_cdf = np.cumsum(blocks.sum(axis=2), axis=1)
        out = np.empty(n, dtype=np.int64)
        for i in range(n):
            target = u[i] * block_cdf[i, -1]
            b = min(int(np.searchsorted(block_cdf[i], target, side="right")), blocks.shape[1] - 1)
            rest = target - (block_cdf[i, b - 1] if b else 0.0)
            within = np.cumsum(blocks[i, b])
            j = min(int(np.searchsorted(within, rest, side="right")), _BLOCK - 1)
            while j > 0 and blocks[i, b, j] == 0.0:  # float slack must not land on a dead token
                j -= 1
            out[i] = min(b * _BLOCK + j, vocab - 1)
        return out

    def _draw_top_p(self, probs: np.ndarray, top_p: float, u: float) -> int:
        order = self._top_p_order(probs, top_p)
        return _draw_sorted(order, probs[order], top_p, u, total=float(probs.sum()))

    def process(self, row: np.ndarray, seq: SequenceSampling) -> None:
        """Logit processors: bias, penalties, and the end-of-sequence rules."""
        p = seq.params
        if p.logit_bias:
            ids = np.fromiter(p.logit_bias.keys(), dtype=np.int64)
            bias = np.fromiter(p.logit_bias.values(), dtype=np.float32)
            ok = (ids >= 0) & (ids < self.n_vocab)
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
            row[ids[(ids >= 0) & (ids < self.n_vocab)]] = _NEG_INF

    @staticmethod
    def _top_p_order(probs: np.ndarray, top_p: float) -> np.ndarray:
        """Token ids by descending probability, enough of them to hold ``top_p`` of the mass."""
        total = probs.sum()
        if len(probs) > _TOP_P_CANDIDATES:
            best = np.argpartition(probs, -_TOP_P_CANDIDATES)[-_TOP_P_CANDIDATES:]
            if probs[best].sum() >= top_p * total:
                return best[np.argsort(-probs[best], kind="stable")]
        return np.argsort(-probs, kind="stable")


def _draw_sorted(ids: np.ndarray, probs: np.ndarray, top_p: float, u: float,
                 total: float | None = None) -> int:
    """Draw among ``ids`` (most likely first, unnormalized ``probs``), keeping the fewest that
    hold ``top_p`` of the mass (``total``: the whole row's, when ``ids`` are not all of it)."""
    cumulative = np.cumsum(probs)
    if top_p < 1.0:
        mass = cumulative[-1] if total is None else total
        cumulative = cumulative[: int(np.searchsorted(cumulative, top_p * mass)) + 1]
    index = int(np.searchsorted(cumulative, u * cumulative[-1], side="right"))
    return int(ids[min(index, len(cumulative) - 1)])


def top_logprobs(logprob_row: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most likely token ids and their log-probabilities, best first."""
    k = min(k, len(logprob_row))
    if k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    ids = np.argpartition(logprob_row, -k)[-k:]
    ids = ids[np.argsort(-logprob_row[ids], kind="stable")]
    return ids, logprob_row[ids]
