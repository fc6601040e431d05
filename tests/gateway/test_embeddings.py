"""Embedding models behind the gateway: an upstream's ``/embeddings`` with the deployment's key
and model name, retries on 5xx, usage and cost, and embeddings asked of chat-only deployments."""

from __future__ import annotations

import openai
import pytest

from tests.gateway.conftest import OTHER_KEY
from tests.gateway.upstream import FakeUpstream


def test_upstream_embeddings(client: openai.OpenAI, fake: FakeUpstream) -> None:
    raw = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["one two three", "four"],
        encoding_format="float")
    reply = raw.parse()
    assert raw.headers["x-switchboard-deployment"] == "embedder"
    assert [d.embedding for d in reply.data] == [[13.0, 0.0, 1.0], [4.0, 1.0, 1.0]]
    assert reply.usage.prompt_tokens == 4
    metrics = reply.model_extra["metrics"]
    assert metrics["input_tokens"] == 4 and metrics["cost_usd"] == pytest.approx(4 * 20 / 1e6)
    [sent] = fake.requests
    assert sent.path == "/embedder/v1/embeddings"
    assert sent.body["model"] == "embedder-upstream-name"
    assert sent.headers["Authorization"] == f"Bearer {OTHER_KEY}"


def test_upstream_embeddings_retry(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script.extend(["500"])
    reply = client.embeddings.create(model="text-embedding-3-small", input="again",
                                     encoding_format="float")
    assert reply.data[0].embedding == [5.0, 0.0, 1.0]
    assert fake.paths() == ["/embedder/v1/embeddings"] * 2


def test_embeddings_of_a_chat_model(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="claude", input="hi")
    assert err.value.body["code"] == "model_not_embedding"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-embedder", input="hi")
