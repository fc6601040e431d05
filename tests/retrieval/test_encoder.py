"""all-MiniLM-L6-v2 on ONNX Runtime against sentence-transformers 6.2.0's own embeddings of 30
texts (the empty string, one letter, 2,700 characters cut at 256 tokens, code, SQL, six
languages, emoji): cosine ≥ 0.999999 on every item, alone or batched; the
tokens are sentence-transformers' own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from switchboard.retrieval import SentenceEncoder, TokenIdsTooLarge
from switchboard.retrieval.encoder import LENGTH_SLACK, MAX_TOKENS, PASS_TOKENS, model_dir

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
    assert cosines.min() >= 0.999999, (texts[worst][:60], cosines[worst])
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    # one at a time gives the vectors it gets sharing a (padded) pass
    alone = np.vstack([encoder.encode(encoder.tokenize([t])) for t in texts])
    assert np.allclose(alone, batched, atol=1e-5)


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


def test_passes_hold_at_most_their_budget(encoder: SentenceEncoder) -> None:
    lengths = (3, 250, 4, 5, 120, 256, 6, 256, 256, *[14] * 60, *[16] * 30, 17)
    ids = [[0] * n for n in lengths]
    passes = encoder._passes(ids)
    assert sorted(i for p in passes for i in p) == list(range(len(ids)))
    for group in passes:
        longest, shortest = max(lengths[i] for i in group), min(lengths[i] for i in group)
        assert len(group) * longest <= PASS_TOKENS or len(group) == 1
        assert len(group) <= encoder.batch_size and longest - shortest <= LENGTH_SLACK
    assert len(passes) < len(ids) / 4  # short inputs share passes


def test_batches_of_many_passes_equal_one_at_a_time() -> None:
    """Inputs of every length, spread over passes of at most 3 inputs, in input order."""
    small = SentenceEncoder(batch_size=3)
    texts = [item["text"] for item in REFERENCE["items"]] + ["word " * n for n in (50, 130, 400)]
    ids = small.tokenize(texts)
    together = small.encode(ids)
    alone = np.vstack([small.encode([one]) for one in ids])
    assert np.allclose(together, alone, atol=1e-5)


def test_an_input_without_tokens_is_refused(encoder: SentenceEncoder) -> None:
    with pytest.raises(ValueError, match="no tokens"):
        encoder.encode([[101, 102], []])


TOKENIZER_SAMPLE = [
    "Ça coûte 12,50 € — naïve café, déjà vu!", "Ünïcödé ÅNGSTRÖM straße ﬁne ½",
    "supercalifragilisticexpialidocious antidisestablishmentarianism", "x" * 300,
    "e.g. U.S.A. (x+y)^2 == z; foo_bar-baz/qux @user #tag https://example.com/a?b=c",
    "\t tabs\nnewlines   spaces \u00a0nbsp \u200bzero-width", "中文分词测试，标点。",
    "한국어 텍스트", "مرحبا بالعالم", "Привет, мир", "[CLS] literal [SEP] [MASK] tokens",
    "emoji 😀👍🏽 ok", "", "word " * 400,
]


def test_tokens_are_sentence_transformers_own(encoder: SentenceEncoder) -> None:
    """The reference tokenizer: sentence-transformers' (where installed), unicode, accents,
    long words, punctuation, special-token text and truncation at 256 included."""
    sentence_transformers = pytest.importorskip("sentence_transformers")
    reference = sentence_transformers.SentenceTransformer(str(model_dir()), device="cpu")
    features = reference.tokenize(TOKENIZER_SAMPLE)
    expected = [[int(t) for t, m in zip(row, mask) if m]
                for row, mask in zip(features["input_ids"], features["attention_mask"])]
    assert encoder.tokenize(TOKENIZER_SAMPLE) == expected
