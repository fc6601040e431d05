"""Token windows over a document: ``chunk_size`` tokens each, overlapping by ``chunk_overlap``,
cut on the tokenizer's character offsets so each chunk is a verbatim span of the text."""

from __future__ import annotations

from dataclasses import dataclass

from tokenizers import Tokenizer

DEFAULT_CHUNK_SIZE = 200
DEFAULT_CHUNK_OVERLAP = 40


@dataclass(frozen=True)
class Chunk:
    position: int
    start_char: int
    end_char: int
    text: str


def chunk_text(tokenizer: Tokenizer, text: str, size: int = DEFAULT_CHUNK_SIZE,
               overlap: int = DEFAULT_CHUNK_OVERLAP) -> list[Chunk]:
    if size < 1 or not 0 <= overlap < size:
        raise ValueError("chunk size must be ≥ 1 and the overlap in [0, size)")
    offsets = [o for o in tokenizer.encode(text, add_special_tokens=False).offsets if o != (0, 0)]
    if not offsets:
        return [Chunk(0, 0, len(text), text)] if text.strip() else []
    out = []
    step = size - overlap
    for position, first in enumerate(range(0, len(offsets), step)):
        window = offsets[first: first + size]
        start, end = window[0][0], window[-1][1]
        out.append(Chunk(position, start, end, text[start:end]))
        if first + size >= len(offsets):
            break
    return out
