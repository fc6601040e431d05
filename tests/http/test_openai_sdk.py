"""The official ``openai`` Python SDK against a real server on loopback."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai import OpenAI

from tests.conftest import API_KEY, RunningServer

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def client(server: RunningServer) -> OpenAI:
    return OpenAI(base_url=server.v1 + "/", api_key=API_KEY, max_retries=0, timeout=60)


def test_non_streamed_completion(client: OpenAI, reference: dict) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, temperature=0, max_tokens=32
    )
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    assert completion.system_fingerprint and completion.created > 0
    choice = completion.choices[0]
    assert choice.index == 0 and choice.message.role == "assistant"
    assert choice.message.content == reference["items"][0]["completion_text"]
    assert choice.finish_reason == "length"
    usage = completion.usage
    assert usage and usage.prompt_tokens == len(reference["items"][0]["prompt_token_ids"])
    assert usage.completion_tokens == 32
    assert usage.total_tokens == usage.prompt_tokens + 32


def test_streamed_completion_with_usage(client: OpenAI, reference: dict) -> None:
    stream = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, temperature=0, max_tokens=32, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reference["items"][0]["completion_text"]
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage
    assert chunks[-1].usage.completion_tokens == 32


def test_stream_without_usage_has_no_usage_chunk(client: OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=4, stream=True
        )
    )
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_stop_max_completion_tokens_seed_and_n(client: OpenAI) -> None:
    done = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, temperature=0, max_completion_tokens=32, stop=[", la"]
    )
    assert done.choices[0].message.content == "L'Étoile"
    assert done.choices[0].finish_reason == "stop"
    kwargs = dict(model=MODEL, messages=MESSAGES, temperature=1.0, seed=7, max_tokens=12, n=2)
    a = client.chat.completions.create(**kwargs)  # type: ignore[arg-type]
    b = client.chat.completions.create(**kwargs)  # type: ignore[arg-type]
    assert [c.index for c in a.choices] == [0, 1]
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]


def test_logprobs(client: OpenAI, reference: dict) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, temperature=0, max_tokens=3, logprobs=True,
        top_logprobs=5,
    )
    content = completion.choices[0].logprobs.content  # type: ignore[union-attr]
    assert [c.token for c in content] == reference["items"][0]["tokens"][:3]
    assert content[0].logprob == pytest.approx(reference["items"][0]["token_logprobs"][0], abs=0.05)
    assert len(content[0].top_logprobs) == 5
    assert bytes(content[0].bytes) == content[0].token.encode()


def test_telkom_seed_module_level_client(telkom_server: RunningServer) -> None:
    """As Telkom documents: module-level base_url and an x-api-key default header."""
    saved = (openai.base_url, openai.api_key, openai.default_headers)
    try:
        openai.api_key = "unused-placeholder"
        openai.base_url = telkom_server.base + "/"
        openai.default_headers = {"x-api-key": API_KEY}
        completion = openai.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=8
        )
        assert completion.choices[0].message.content
    finally:
        openai.base_url, openai.api_key, openai.default_headers = saved
        openai._client = None  # type: ignore[attr-defined]


def test_base_path_routes(telkom_server: RunningServer) -> None:
    client = OpenAI(base_url=telkom_server.base + "/v1/", api_key=API_KEY, max_retries=0)
    assert [m.id for m in client.models.list().data] == [MODEL, "all-minilm-l6-v2"]
    bare = OpenAI(base_url=telkom_server.base.rsplit("/Telkom", 1)[0] + "/v1/",
                  api_key=API_KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        bare.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)


@pytest.mark.parametrize("base", ["/v2/ai", "/v2/ai/openai"])
def test_telnyx_base_urls(server: RunningServer, base: str) -> None:
    """A Telnyx client changes only its host: chat, models (and embeddings) at Telnyx's paths."""
    client = OpenAI(base_url=server.base + base, api_key=API_KEY, max_retries=0, timeout=60)
    completion = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=4, extra_body={"min_p": 0.05, "top_k": 20},
    )
    assert completion.choices[0].message.content and completion.usage.completion_tokens <= 4
    assert MODEL in [m.id for m in client.models.list()]
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=server.base + base, api_key="sk-wrong", max_retries=0).models.list()
    if base == "/v2/ai/openai":
        vector = client.embeddings.create(model="all-minilm-l6-v2", input="hi").data[0].embedding
        assert len(vector) == 384
        listed = httpx.get(server.base + base + "/embeddings/models",
                           headers={"x-api-key": API_KEY})
        assert [m["id"] for m in listed.json()["data"]] == ["all-minilm-l6-v2"]


def test_wrong_key_is_401(server: RunningServer) -> None:
    client = OpenAI(base_url=server.v1 + "/", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)
    assert err.value.status_code == 401
    assert err.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    assert "sk-wrong" not in server.log()


def test_unknown_model_is_404(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-nope", messages=MESSAGES, max_tokens=2)
    assert err.value.body["param"] == "model"  # type: ignore[index]
    assert err.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-nope")
    assert client.models.retrieve(MODEL).id == MODEL


def test_invalid_value_is_422(client: OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as err:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=3)
    body = err.value.response.json()
    assert body["detail"][0]["loc"] == ["body", "temperature"]
    assert body["error"]["param"] == "temperature"
    assert body["error"]["type"] == "invalid_request_error"


def test_understood_but_unsupported_parameter_is_400_naming_it(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, extra_body={"api_key_ref": "my-openai-key"}
        )
    assert err.value.body["param"] == "api_key_ref"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES,
            functions=[{"name": "f", "parameters": {}}],
        )
    assert err.value.body["param"] == "functions"  # type: ignore[index]


def test_unknown_parameter_is_named_in_header(client: OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=MESSAGES, max_tokens=2, extra_body={"frobnicate": True, "zz": 1}
    )
    assert raw.headers["x-switchboard-ignored-params"] == "frobnicate,zz"
    assert raw.parse().choices[0].message.content is not None


def test_beam_search_returns_the_best_n_beams(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=24, n=2,
        extra_body={"use_beam_search": True, "best_of": 4, "length_penalty": 1.0},
    )
    texts = [c.message.content for c in completion.choices]
    assert [c.index for c in completion.choices] == [0, 1]
    assert len(set(texts)) == 2 and all(texts)
    assert "Paris" in texts[0]  # greedy decoding never gets there on this model
    assert completion.usage.completion_tokens >= 2  # type: ignore[union-attr]
    stream = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=24, n=2, stream=True,
        extra_body={"use_beam_search": True, "best_of": 4},
    )
    streamed = {0: "", 1: ""}
    for chunk in stream:
        for choice in chunk.choices:
            streamed[choice.index] += choice.delta.content or ""
    assert [streamed[0], streamed[1]] == texts


@pytest.mark.parametrize(
    "extra,param",
    [
        ({"use_beam_search": True, "best_of": 1}, "best_of"),
        ({"use_beam_search": True, "best_of": 3, "temperature": 0.8}, "temperature"),
        ({"use_beam_search": True, "best_of": 3, "logprobs": True}, "logprobs"),
        ({"length_penalty": 0.5}, "length_penalty"),
        ({"use_beam_search": True, "best_of": 64}, None),
    ],
)
def test_beam_search_errors_name_the_parameter(
    client: OpenAI, extra: dict, param: str | None
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, extra_body=extra)
    if param:
        assert err.value.body["param"] == param  # type: ignore[index]
    else:
        assert "best_of" in err.value.message


def test_streamed_n_choices_with_logprobs(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=6, n=3, stream=True, seed=11,
        temperature=1.0, logprobs=True, top_logprobs=2,
        stream_options={"include_usage": True},
    )
    tokens: dict[int, list[str]] = {0: [], 1: [], 2: []}
    finishes: dict[int, str] = {}
    usage = None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            if choice.logprobs and choice.logprobs.content:
                for item in choice.logprobs.content:
                    assert len(item.top_logprobs) == 2
                    tokens[choice.index].append(item.token)
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert set(finishes) == {0, 1, 2}
    assert all(1 <= len(t) <= 6 for t in tokens.values())
    assert usage is not None and usage.completion_tokens == sum(len(t) for t in tokens.values())


def test_concurrent_clients_are_batched(server: RunningServer, client: OpenAI) -> None:
    import threading

    import httpx

    results: list[int] = []
    peak = 0

    def one(i: int) -> None:
        r = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": f"Count to {i}"}],
            max_tokens=48, extra_body={"ignore_eos": True}, seed=i,
        )
        results.append(r.usage.completion_tokens)  # type: ignore[union-attr]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        stats = httpx.get(server.base + "/health").json()["models"][MODEL]
        peak = max(peak, stats["running"])
    for t in threads:
        t.join()
    assert results == [48] * 8
    assert peak > 1  # requests ran in one batch, not one after another


def test_best_of_keeps_the_most_likely_samples(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=12, n=2, temperature=1.0, seed=5,
        logprobs=True, extra_body={"best_of": 5},
    )
    assert [c.index for c in completion.choices] == [0, 1]
    sums = [sum(t.logprob for t in c.logprobs.content) for c in completion.choices]  # type: ignore[union-attr]
    assert sums[0] >= sums[1]  # ranked by cumulative logprob
    returned = sum(len(c.logprobs.content) for c in completion.choices)  # type: ignore[union-attr]
    assert completion.usage.completion_tokens > returned  # all 5 samples were generated
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, n=1, stream=True, extra_body={"best_of": 3}
        )
    assert err.value.body["param"] == "best_of"  # type: ignore[index]


def test_continuous_usage_stats_puts_usage_on_every_chunk(client: OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=5, stream=True,
        extra_body={"ignore_eos": True},
        stream_options={"include_usage": True, "continuous_usage_stats": True},  # type: ignore[typeddict-unknown-key]
    ))
    counts = [c.usage.completion_tokens for c in chunks]  # type: ignore[union-attr]
    assert counts == sorted(counts) and counts[-1] == 5
    assert all(c.usage.prompt_tokens > 0 for c in chunks)  # type: ignore[union-attr]
