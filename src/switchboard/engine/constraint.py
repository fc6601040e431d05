"""Constrained decoding with llguidance: a grammar (JSON Schema, regex, choice, Lark/GBNF) becomes
a per-step token mask for one sequence, and the matcher follows each accepted token.

The engine samples first and computes the mask only when the grammar rejects the draw, then
draws again from the masked distribution. That is exact: an allowed token x is drawn with
p(x) + (1 - Z) * p(x) / Z = p(x) / Z, Z being the allowed mass; greedy picks the allowed argmax.
Most draws inside JSON are allowed, so most steps skip computing the mask.

Grammars arrive already compiled to llguidance's grammar string (see
``switchboard.serving.constraints``); this module only runs them against the model's vocabulary.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import llguidance
import llguidance.llamacpp
import numpy as np

from switchboard.engine.model import LlamaModel


class GrammarError(ValueError):
    """The grammar cannot be enforced (invalid, or uses a feature llguidance does not support)."""


class GrammarVocabulary:
    """llguidance's view of a model's tokens; built once per model (about a second), lazily."""

    def __init__(self, model: LlamaModel) -> None:
        self._model = model
        self._tokenizer: llguidance.LLTokenizer | None = None
        self._lock = threading.Lock()

    @property
    def tokenizer(self) -> llguidance.LLTokenizer:
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = llguidance.llamacpp.lltokenizer_from_vocab(
                    self._model.vocab, eos_token=self._model.eog_token_ids
                )
            return self._tokenizer

    def check(self, grammar: str) -> None:
        """Raise ``GrammarError`` unless ``grammar`` compiles against this vocabulary."""
        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(
            grammar, self.tokenizer
        )
        if is_error:
            raise GrammarError(messages[0] if messages else "invalid grammar")

    def matcher(self, grammar: str) -> Constraint:
        matcher = llguidance.LLMatcher(self.tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise GrammarError(matcher.get_error())
        return Constraint(matcher, self._model.n_vocab)


# Byte value -> the 8 additive logit masks its bits stand for (bit set: 0, clear: -inf).
_BYTE_MASKS = np.where(
    np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little") == 1,
    np.float32(0.0),
    np.float32(-np.inf),
).astype(np.float32)

# After a rejected draw the next mask is likely needed too: it is then computed while the model
# runs its next forward pass (llguidance drops the GIL).
_MASK_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="switchboard-grammar")
# Masks needed at once for several sequences are computed in parallel by llguidance.
_PARALLEL = llguidance.LLExecutor(num_threads=2)


def mask_rows(constraints: list[Constraint], rows: np.ndarray) -> None:
    """``Constraint.mask`` for many sequences, computing the missing masks in parallel."""
    todo = [(c._matcher, i) for i, c in enumerate(constraints) if c._pending is None]
    for c in constraints:
        c._needed_mask = True  # so the next mask is prefetched
        c._wait()
    if todo:
        bits = np.empty((len(constraints), constraints[0]._bits.size), dtype=np.int32)
        _PARALLEL.unsafe_compute_mask_ptr(todo, bits.ctypes.data, bits.shape[1] * 4, len(bits))
        for _, i in todo:
            constraints[i]._bits[:] = bits[i]
    for c, row in zip(constraints, rows):
        row += _BYTE_MASKS[c._bits.view(np.uint8)].reshape(-1)[: len(row)]


class Constraint:
    """One sequence's position in its grammar."""

    def __init__(self, matcher: llguidance.LLMatcher, n_vocab: int) -> None:
        self._matcher = matcher
        self._n_vocab = n_vocab
        self._bits = np.empty((n_vocab + 31) // 32, dtype=np.int32)
        self._pending: Future[None] | None = None
        self._stopped = False  # read before a prefetch starts: the matcher is busy during one
        self._needed_mask = True  # the last step needed a mask: prefetch the next one

    def prefetch(self) -> None:
        """Start computing the next mask in the background."""
        if self._pending is None:
            self._pending = _MASK_WORKER.submit(self._compute)

    def _compute(self) -> None:
        self._matcher.unsafe_compute_mask_ptr(self._bits.ctypes.data, self._bits.nbytes)

    def allows(self, token: int) -> bool:
        """Whether the grammar accepts ``token`` now (cheap: no mask is computed)."""
        self._wait()
        ok = self._matcher.validate_tokens([token]) == 1
        if ok:
            self._needed_mask = False
        return ok

    def valid_prefix(self, tokens: list[int]) -> int:
        """How many of ``tokens``, in order, the grammar accepts from here (none is consumed)."""
        self._wait()
        if self._stopped or self._matcher.is_error():
            return 0
        return int(self._matcher.validate_tokens(tokens))

    def _wait(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def accept(self, token: int, prefetch: bool = True) -> bool:
        """Advance past ``token`` and (unless ``prefetch`` is False, when more tokens follow at
        once) start on the next mask; False if it was not allowed."""
        if self._pending is not None:  # a mask nobody used (e.g. the step was undone)
            self._pending.result()
            self._pending = None
        ok = bool(self._matcher.consume_token(token))
        self._stopped = bool(self._matcher.is_stopped())
        if ok and prefetch:
            self.prefetch_if_needed()
        return ok

    def prefetch_if_needed(self) -> None:
        """Start on the next mask if the last step needed one (the next one likely will)."""
        if not self._stopped and self._needed_mask and not self._matcher.is_error():
            self.prefetch()

    def forced(self) -> list[int]:
        """The tokens the grammar allows as the only continuation from here (llguidance's
        fast-forward tokens: a key, punctuation, the rest of an enum value), in the tokenizer's
        own split; empty when the next token is a choice. They are not consumed."""
        self._wait()
        if self._stopped or self._matcher.is_error():
            return []
        return list(self._matcher.compute_ff_tokens())

    @property
    def finished(self) -> bool:
        """The grammar is complete and allows nothing more (e.g. the closing brace of JSON)."""
        return self._stopped

    @property
    def error(self) -> str | None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None
        return self._matcher.get_error() if self._matcher.is_error() else None

    def fork(self) -> Constraint:
        if self._pending is not None:
            self._pending.result()
            self._pending = None
        return Constraint(self._matcher.deep_copy(), self._n_vocab)
