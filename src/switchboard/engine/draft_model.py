"""Drafts from a second, smaller model: ``--draft-model PATH.gguf`` (same vocabulary as the served
model) guesses a speculating sequence's next tokens greedily, and the served model verifies
them as it verifies prompt-lookup drafts (``speculative``), so the output stays the served
model's own, token for token.

The draft model has its own llama.cpp context, a KV stream per sequence id. For each sequence it
remembers which tokens its stream holds; before a guess it drops the cells past the longest
prefix those share with the sequence (the rejected guesses), reads what the stream lacks (the
whole prompt the first time, then the tokens accepted or chosen since), and then decodes its
guesses one at a time, each fed back for the next. A sequence id taken over by another sequence
starts from an empty stream. Guesses are its most likely tokens, with none of the request's
sampling rules: only the served model's choices count.
"""

from __future__ import annotations

import numpy as np

from switchboard.engine.model import LlamaModel
from switchboard.engine.scheduler import common_prefix
from switchboard.engine.sequence import Sequence


class DraftVocabularyMismatch(ValueError):
    """The draft model's tokens are not the served model's."""


class DraftModel:
    def __init__(self, model: LlamaModel, target: LlamaModel) -> None:
        if model.n_vocab != target.n_vocab or any(
            model.piece(t, special=True) != target.piece(t, special=True)
            for t in range(0, target.n_vocab, max(1, target.n_vocab // 512))
        ):
            raise DraftVocabularyMismatch(
                f"the draft model {model.info.path.name} does not share the served model's "
                f"vocabulary ({model.n_vocab} against {target.n_vocab} tokens)")
        self.model = model
        # seq id -> (the sequence, the tokens its stream holds)
        self._streams: dict[int, tuple[Sequence, list[int]]] = {}

    def propose(self, seq: Sequence, k: int) -> list[int]:
        """Up to ``k`` tokens the draft model expects after ``seq.tokens``."""
        if k <= 0:
            return []
        seq_id, tokens = seq.seq_id, seq.tokens
        if len(tokens) + k >= self.model.n_ctx_seq:
            return []
        held = self._streams.get(seq_id)
        kept = held[1] if held is not None and held[0] is seq else []
        n = common_prefix(kept, tokens, len(tokens) - 1)  # the last is read again, for logits
        self.model.forget(seq_id, n)
        logits = self._read(seq_id, tokens[n:], n)
        kept = list(tokens)
        guesses: list[int] = []
        while True:
            guess = int(np.argmax(logits))
            guesses.append(guess)
            if len(guesses) == k:
                break
            logits = self._read(seq_id, [guess], len(kept))
            kept.append(guess)
        self._streams[seq_id] = (seq, kept)
        return guesses

    def forget(self, seq: Sequence) -> None:
        """Start ``seq``'s stream afresh at its next guess (after a failure)."""
        self._streams.pop(seq.seq_id, None)

    def _read(self, seq_id: int, tokens: list[int], start: int) -> np.ndarray:
        """Feed ``tokens`` at positions from ``start`` in chunks; the last one's logits."""
        row: np.ndarray | None = None
        step = self.model.n_batch
        for at in range(0, len(tokens), step):
            chunk = np.asarray(tokens[at : at + step], dtype=np.int32)
            n = len(chunk)
            want = np.zeros(n, dtype=np.int8)
            want[-1] = 1
            row = self.model.decode(chunk, np.arange(start + at, start + at + n, dtype=np.int32),
                                    np.full(n, seq_id, dtype=np.int32), want)[-1]
        assert row is not None
        return row

