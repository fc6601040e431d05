"""all-MiniLM-L6-v2 in NumPy against sentence-transformers 6.2.0's own embeddings of 30 texts
(the empty string, one letter, 2,700 characters cut at 256 tokens, code, SQL, six languages,
emoji): cosine ≥ 0.999 on every item, alone or batched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from switchboard.retrieval import SentenceEncoder, TokenIdsTooLarge
from switchboard.retrieval.encoder import MAX_TOKENS

REFERENCE = json.loads((Path(__file__).parents[1] / "data" / "minilm_embeddings.json").read_text())


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder()


def _cosines(vectors: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return (vectors * reference).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(
        reference, axis=1)


def test_matches_sentence_transformers(encoder: SentenceEncoder) -> None:
    texts = [item["text"] for item in REFERENCE["items"]]
    reference = np.array([item["embedding"] for item in REFERENCE["items"]], dtype=np.float32)
    assert "" in texts and max(len(t) for t in texts) >= 2700
    batched = encoder.encode(encoder.tokenize(texts))
    cosines = _cosines(batched, reference)
    worst = int(np.argmin(cosines))
    assert cosines.min() >= 0.999, (texts[worst][:60], cosines[worst])
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    # one at a time gives the same vectors as in a padded batch
    alone = np.vstack([encoder.encode(encoder.tokenize([t])) for t in texts[:8]])
    assert np.allclose(alone, batched[:8], atol=1e-5)


def test_long_text_is_cut_at_256_tokens(encoder: SentenceEncoder) -> None:
    ids = encoder.tokenize(["word " * 1000])[0]
    assert len(ids) == MAX_TOKENS
    longer = encoder.encode(encoder.tokenize(["word " * 1000, "word " * 2000]))
    assert np.allclose(longer[0], longer[1], atol=1e-6)


def test_token_arrays(encoder: SentenceEncoder) -> None:
    text_ids = encoder.tokenize(["hello world"])[0]
    wrapped = encoder.wrap([text_ids[1:-1]])  # without [CLS] and [SEP]: framed again
    assert wrapped == [text_ids]
    with pytest.raises(TokenIdsTooLarge):
        encoder.wrap([[1, 2, encoder.vocab_size]])


def test_batches_pad_little(encoder: SentenceEncoder) -> None:
    ids = [[0] * n for n in (3, 250, 4, 5, 120, 256, 6)]
    batches = encoder._batches(ids)
    assert sorted(i for b in batches for i in b) == list(range(len(ids)))
    for batch in batches:
        lengths = [len(ids[i]) for i in batch]
        assert max(lengths) <= 1.5 * min(lengths) + 8
