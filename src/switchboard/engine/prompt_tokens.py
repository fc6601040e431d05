"""Prompt tokenization in time linear in the prompt, with the same tokens as llama.cpp's.

llama.cpp finds special tokens (``<|im_start|>``…) in a text by searching, for every fragment
between those already found and for every special token of the vocabulary, from the fragment to
the end of the whole text; a prompt of many messages therefore costs the number of fragments
times its length. Where that product is large, one regular-expression pass cuts the text at its
special tokens (longest first, as llama.cpp tries them) and llama.cpp tokenizes each plain
fragment on its own, as it does after its own search; BOS and EOS are added as the vocabulary
asks. A vocabulary whose special tokens strip neighbouring whitespace (``lstrip`` / ``rstrip``)
is left to llama.cpp.

With a ``limit`` (the context), a prompt is known to be too long as soon as its tokens so far pass
it, or a plain fragment's bytes exceed what the remaining tokens could cover (a byte-level BPE or
SentencePiece token spells at most the vocabulary's longest piece), and ``PromptOverLimit`` is
raised without tokenizing the rest.
"""

from __future__ import annotations

import ctypes
import itertools
import re
import threading
import weakref
from dataclasses import dataclass

import llama_cpp

from switchboard.engine.model import LlamaModel
from switchboard.engine.request import EngineError, PromptTooLong

_SPECIAL = (llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
            | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN)
_STRIPS = llama_cpp.LLAMA_TOKEN_ATTR_LSTRIP | llama_cpp.LLAMA_TOKEN_ATTR_RSTRIP
# Special tokens found times characters up to which llama.cpp tokenizes the whole text itself.
_WHOLE_TEXT_WORK = 10_000_000
_LOSSLESS = (llama_cpp.LLAMA_VOCAB_TYPE_SPM, llama_cpp.LLAMA_VOCAB_TYPE_BPE)


class PromptOverLimit(PromptTooLong):
    """The prompt has more tokens than the limit (counted only as far as needed to know)."""

    def __init__(self, limit: int) -> None:
        EngineError.__init__(
            self, f"This model's maximum context length is {limit} tokens. However, your "
            f"messages resulted in more than {limit} tokens. Please reduce the length of the "
            "messages.")


@dataclass(frozen=True)
class _SpecialTokens:
    pattern: re.Pattern[str] | None  # None: no special token, or some strip whitespace
    ids: dict[str, int]
    bos: int | None
    eos: int | None
    longest_piece: int | None  # bytes; None where a token may stand for more than its piece


_tables: weakref.WeakKeyDictionary[LlamaModel, _SpecialTokens] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _special_tokens(llama: LlamaModel) -> _SpecialTokens:
    with _lock:
        found = _tables.get(llama)
    if found is not None:
        return found
    vocab = llama.vocab
    ids: dict[str, int] = {}
    strips = False
    longest = 4  # one UTF-8 character
    buf = ctypes.create_string_buffer(256)
    for token in range(llama_cpp.llama_vocab_n_tokens(vocab)):
        attr = llama_cpp.llama_vocab_get_attr(vocab, token)
        if not attr & _SPECIAL:
            n = llama_cpp.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
            longest = max(longest, n if n >= 0 else -n)
            continue
        strips = strips or bool(attr & _STRIPS)
        text = llama_cpp.llama_vocab_get_text(vocab, token).decode("utf-8", "replace")
        if text:
            ids.setdefault(text, token)
    texts = sorted(ids, key=len, reverse=True)
    pattern = re.compile("|".join(map(re.escape, texts))) if texts and not strips else None
    bos = llama_cpp.llama_vocab_bos(vocab) if llama_cpp.llama_vocab_get_add_bos(vocab) else None
    eos = llama_cpp.llama_vocab_eos(vocab) if llama_cpp.llama_vocab_get_add_eos(vocab) else None
    lossless = llama_cpp.llama_vocab_type(vocab) in _LOSSLESS
    table = _SpecialTokens(pattern, ids, bos if bos is not None and bos >= 0 else None,
                           eos if eos is not None and eos >= 0 else None,
                           longest if lossless else None)
    with _lock:
        _tables[llama] = table
    return table


def tokenize_prompt(llama: LlamaModel, text: str, limit: int | None = None) -> list[int]:
    """``llama.tokenize(text)`` (special tokens parsed, BOS/EOS as the vocabulary adds them);
    ``PromptOverLimit`` once the tokens are known to be more than ``limit``."""
    table = _special_tokens(llama)
    if limit is not None and table.longest_piece is not None \
            and len(text) > limit * table.longest_piece:  # characters ≤ bytes
        raise PromptOverLimit(limit)
    matches = [] if table.pattern is None else table.pattern.finditer(text)
    found = list(itertools.islice(matches, _WHOLE_TEXT_WORK // max(len(text), 1) + 1))
    if len(found) * len(text) <= _WHOLE_TEXT_WORK:  # llama.cpp's search stays cheap
        tokens = llama.tokenize(text)
        if limit is not None and len(tokens) > limit:
            raise PromptOverLimit(limit)
        return tokens
    tokens: list[int] = [] if table.bos is None else [table.bos]
    start = 0
    for match in itertools.chain(found, matches):
        if match.start() > start:
            tokens += _plain(llama, text[start:match.start()], table, limit, len(tokens))
        tokens.append(table.ids[match.group()])
        start = match.end()
        if limit is not None and len(tokens) > limit:
            raise PromptOverLimit(limit)
    if start < len(text):
        tokens += _plain(llama, text[start:], table, limit, len(tokens))
    if table.eos is not None:
        tokens.append(table.eos)
    if limit is not None and len(tokens) > limit:
        raise PromptOverLimit(limit)
    return tokens


def _plain(llama: LlamaModel, text: str, table: _SpecialTokens, limit: int | None,
           so_far: int) -> list[int]:
    """Tokens of text holding no special token (nothing for llama.cpp to search for)."""
    data = text.encode("utf-8", "replace")
    if limit is not None and table.longest_piece is not None \
            and len(data) > (limit - so_far) * table.longest_piece:
        raise PromptOverLimit(limit)
    tokens = llama.tokenize(text, add_special=False, parse_special=False)
    if limit is not None and so_far + len(tokens) > limit:
        raise PromptOverLimit(limit)
    return tokens
