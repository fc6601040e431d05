"""``POST /v1/embeddings`` through the ``openai`` SDK: floats and base64, strings and token
arrays, usage, similarity that means something, and 4xx for bad input."""

from __future__ import annotations

import numpy as np
import openai
import pytest

from tests.conftest import API_KEY, RunningServer


@pytest.fixture
def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.v1, api_key=API_KEY, max_retries=0)


def test_embeddings_float_and_base64(client: openai.OpenAI) -> None:
    texts = ["The cat sits on the mat.", "A kitten is resting on a rug.",
             "Quarterly revenue fell by 3 percent."]
    floats = client.embeddings.create(model="all-minilm-l6-v2", input=texts,
                                      encoding_format="float")
    assert floats.model == "all-minilm-l6-v2" and [d.index for d in floats.data] == [0, 1, 2]
    vectors = np.array([d.embedding for d in floats.data])
    assert vectors.shape == (3, 384)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens > 3 * 2
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > 0.5 > similarity[0, 2]
    # the SDK asks for base64 by default and decodes it
    packed = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts[0])
    assert np.allclose(packed.data[0].embedding, vectors[0], atol=1e-6)


def test_token_arrays_and_listing(client: openai.OpenAI) -> None:
    by_text = client.embeddings.create(model="all-minilm-l6-v2", input=["hello world"],
                                       encoding_format="float")
    by_ids = client.embeddings.create(model="all-minilm-l6-v2", input=[[7592, 2088]],
                                      encoding_format="float")  # "hello world"
    assert np.allclose(by_text.data[0].embedding, by_ids.data[0].embedding, atol=1e-6)
    assert "all-minilm-l6-v2" in [m.id for m in client.models.list()]


@pytest.mark.parametrize(("extra", "status", "param"), [
    ({"input": []}, 422, "input"),
    ({"input": [[]]}, 422, "input"),
    ({"input": "x", "model": "text-embedding-3-small"}, 404, "model"),
    ({"input": [[1, 2, 10**6]]}, 400, "input"),
    ({"input": "x", "dimensions": 64}, 400, "dimensions"),
    ({"input": [[1000] * 300] * 1200}, 400, "input"),  # 1,200 × 256 tokens > 300,000
])
def test_bad_requests(client: openai.OpenAI, extra: dict, status: int, param: str) -> None:
    with pytest.raises(openai.APIStatusError) as err:
        client.embeddings.create(**{"model": "all-minilm-l6-v2", **extra})
    assert err.value.status_code == status
    assert err.value.body["param"] == param
