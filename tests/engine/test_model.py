"""The model runner's KV copies with a stream per sequence: a short source is copied cell by cell
at once, a long one (or one in a pending whole-stream copy) by llama.cpp's whole-stream copy at
the next decode. Either way the copy decodes exactly as its source does."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from switchboard.engine import LlamaModel
from switchboard.engine.embedded import embedded_model_path


@pytest.fixture(scope="module")
def model() -> Iterator[LlamaModel]:
    # 4 streams of 256 cells: a source of more than 64 cells takes the whole-stream copy
    m = LlamaModel(embedded_model_path(), n_ctx=1024, n_seq_max=4, n_threads=2,
                   unified_kv=False)
    yield m
    m.close()


@pytest.fixture()
def tokens(model: LlamaModel) -> Iterator[np.ndarray]:
    text = "The harbour master counted the boats coming home before the storm. " * 8
    yield np.array(model.tokenize(text)[:100], dtype=np.int32)
    for seq in range(4):
        model.forget(seq)


def read(model: LlamaModel, tokens: np.ndarray, seq: int, start: int, end: int,
         offset: int = 0) -> np.ndarray:
    """Feed ``tokens[offset + start : offset + end]`` to ``seq`` at positions ``start..end``;
    return the logits after the last one."""
    n = end - start
    want = np.zeros(n, dtype=np.int8)
    want[-1] = 1
    return model.decode(tokens[offset + start:offset + end], np.arange(start, end, dtype=np.int32),
                        np.full(n, seq, dtype=np.int32), want)[0]


def test_a_short_source_is_copied_at_once_and_decodes_as_its_source(
    model: LlamaModel, tokens: np.ndarray
) -> None:
    read(model, tokens, 0, 0, 40)
    model.share(0, 1, 30)  # dst gets the first 30 of the source's 40 cells
    assert model._pending_copies == set()  # copied now, not at the next decode
    read(model, tokens, 1, 30, 39)
    mine = read(model, tokens, 1, 39, 40)
    model.forget(0, 39)
    theirs = read(model, tokens, 0, 39, 40)
    assert np.array_equal(mine, theirs)


def test_a_long_source_and_copies_next_to_a_pending_one_take_whole_stream_copies(
    model: LlamaModel, tokens: np.ndarray
) -> None:
    read(model, tokens, 2, 0, 80)
    model.forget(2, 30)
    expected = read(model, tokens, 2, 30, 40)  # 30 cells read in a pass of 80, then 10 more
    model.forget(2)
    read(model, tokens, 1, 0, 40, offset=50)  # other text in 1's stream, so stale data shows
    model.forget(1)
    read(model, tokens, 3, 0, 20, offset=50)
    read(model, tokens, 0, 0, 80)
    model.share(0, 1, 30)  # 80 cells held: more than a quarter of the stream
    assert model._pending_copies == {0, 1}
    # 1's data arrives at the next decode: a copy from it must not read its stream now, and a
    # copy into 0 must not write there before 0's data has gone to 1.
    model.share(1, 2, 30)
    model.share(3, 0, 20)
    assert model._pending_copies == {0, 1, 2, 3}
    assert np.array_equal(read(model, tokens, 2, 30, 40), expected)
    assert model._pending_copies == set()
    assert np.array_equal(read(model, tokens, 1, 30, 40), expected)
    assert np.array_equal(read(model, tokens, 0, 20, 21, offset=50),
                          read(model, tokens, 3, 20, 21, offset=50))
