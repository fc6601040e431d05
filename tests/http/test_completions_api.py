"""``POST /v1/completions`` and ``POST /tokenize`` / ``/detokenize`` on a real server: the
official ``openai`` SDK's ``completions.create``, whole and streamed, with echo and logprobs;
prompt logprobs equal to the logprobs the chat endpoint reported when it generated the same
tokens (what lm-evaluation-harness scores with); token-id and list prompts with n; refusals in
OpenAI's error shape; one ledger row per answered request; tokenize and detokenize against the
engine's own tokens; and an upstream Switchboard reached by translation to chat."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.conftest import API_KEY, RunningServer, start_server, stop_server

ADMIN_KEY = "sb-admin-completions-0123456789"
LOCAL = "smollm2"
REMOTE = "remote-smol"
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def completions_server(tmp_path_factory: pytest.TempPathFactory,
                       server: RunningServer) -> Iterator[RunningServer]:
    """A local model (with flash attention: llama.cpp then gives a token the same numbers read
    alone, as generation reads it, or in a prompt) and the session's server as an upstream."""
    tmp = tmp_path_factory.mktemp("completions")
    config = tmp / "switchboard.yaml"
    config.write_text(yaml.safe_dump({
        "secrets": {"second": API_KEY},
        "deployments": [
            {"id": "smol", "provider": "local"},
            {"id": "second", "provider": "openai-compatible", "base_url": server.v1,
             "model": "smollm2-135m-instruct", "api_key_secret": "second"},
        ],
        "models": [{"name": LOCAL, "deployments": ["smol"]},
                   {"name": REMOTE, "deployments": ["second"], "retries": 0}],
    }))
    srv = start_server(tmp, "--config", str(config), "--api-key", API_KEY, "--admin-key",
                       ADMIN_KEY, "--weights", "original", "--flash-attn")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def client(completions_server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=completions_server.v1, api_key=API_KEY, max_retries=0,
                         timeout=120)


@pytest.fixture(scope="module")
def http(completions_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=completions_server.base, timeout=120,
                      headers={"authorization": f"Bearer {API_KEY}"}) as c:
        yield c


def tokenize(http: httpx.Client, **body: Any) -> dict[str, Any]:
    r = http.post("/tokenize", json={"model": LOCAL, **body})
    assert r.status_code == 200, r.text
    return r.json()


def test_sdk_completion_with_echo_and_logprobs(client: openai.OpenAI,
                                               http: httpx.Client) -> None:
    prompt_tokens = tokenize(http, prompt=PROMPT)["count"]
    completion = client.completions.create(model=LOCAL, prompt=PROMPT, max_tokens=4,
                                           temperature=0, echo=True, logprobs=2)
    assert completion.object == "text_completion" and completion.id.startswith("cmpl-")
    assert completion.model and completion.created > 0
    choice = completion.choices[0]
    assert choice.index == 0 and choice.finish_reason == "length"
    assert choice.text.startswith(PROMPT) and len(choice.text) > len(PROMPT)
    lp = choice.logprobs
    assert lp is not None and lp.tokens and lp.token_logprobs and lp.top_logprobs
    assert lp.text_offset is not None
    assert len(lp.tokens) == prompt_tokens + 4
    assert "".join(lp.tokens) == choice.text
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    for token, logprob, top in zip(lp.tokens[1:], lp.token_logprobs[1:], lp.top_logprobs[1:],
                                   strict=True):
        assert logprob is not None and logprob <= 0 and top is not None
        assert top[token] == logprob and 2 <= len(top) <= 3  # the chosen one is always there
    for logprob, top in zip(lp.token_logprobs[prompt_tokens:], lp.top_logprobs[prompt_tokens:],
                            strict=True):
        assert top is not None  # greedy: the most likely token was generated
        assert logprob == max(top.values())
    assert lp.text_offset == [sum(map(len, lp.tokens[:i])) for i in range(len(lp.tokens))]
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        prompt_tokens, 4)
    assert completion.model_extra and completion.model_extra["metrics"]["output_tokens"] == 4


def test_sdk_streamed_completion_matches_the_whole_one(client: openai.OpenAI) -> None:
    whole = client.completions.create(model=LOCAL, prompt=PROMPT, max_tokens=6, temperature=0,
                                      echo=True, logprobs=1)
    chunks = list(client.completions.create(
        model=LOCAL, prompt=PROMPT, max_tokens=6, temperature=0, echo=True, logprobs=1,
        stream=True, stream_options={"include_usage": True}))
    assert {c.object for c in chunks} == {"text_completion"} and len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    tokens = [t for c in chunks if c.choices and c.choices[0].logprobs
              for t in c.choices[0].logprobs.tokens or []]
    assert tokens == whole.choices[0].logprobs.tokens  # type: ignore[union-attr]
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens  # type: ignore[union-attr]


def test_prompt_logprobs_equal_the_chat_endpoints_logprobs(client: openai.OpenAI,
                                                          http: httpx.Client) -> None:
    """lm-evaluation-harness's scoring request: echo, max_tokens 0 and logprobs, on token ids."""
    messages = [{"role": "user", "content": "Write one sentence about the sea."}]
    chat = client.chat.completions.create(model=LOCAL, messages=messages,  # type: ignore[arg-type]
                                          temperature=0, max_tokens=12, logprobs=True,
                                          top_logprobs=3)
    generated = chat.choices[0].logprobs.content  # type: ignore[union-attr]
    assert generated and len(generated) == 12
    prompt = tokenize(http, messages=messages)["tokens"]
    assert chat.usage is not None and len(prompt) == chat.usage.prompt_tokens
    ids = []
    for item in generated:  # each generated token's id, from its own text
        [token] = tokenize(http, prompt=item.token, add_special_tokens=False)["tokens"]
        ids.append(token)
    scored = client.completions.create(model=LOCAL, prompt=prompt + ids, max_tokens=0,
                                       echo=True, logprobs=3)
    lp = scored.choices[0].logprobs
    assert lp is not None and lp.tokens and lp.token_logprobs and lp.top_logprobs
    assert scored.usage is not None and scored.usage.completion_tokens == 0
    assert len(lp.tokens) == len(prompt) + 12
    for i, item in enumerate(generated):
        at = len(prompt) + i
        assert lp.tokens[at] == item.token
        assert lp.token_logprobs[at] == pytest.approx(item.logprob, abs=1e-4)
        top = lp.top_logprobs[at]
        assert top is not None
        for alternative in item.top_logprobs:
            assert top[alternative.token] == pytest.approx(alternative.logprob, abs=1e-4)


def test_a_token_that_stops_generation_keeps_its_logprob(client: openai.OpenAI,
                                                        http: httpx.Client) -> None:
    """lm-evaluation-harness asks for one generated token and drops the last logprob entry, so
    a token that ends generation (end-of-generation, a stop token id) is listed too."""
    first = client.completions.create(model=LOCAL, prompt=PROMPT, max_tokens=1, temperature=0,
                                      logprobs=0)
    generated = first.choices[0].logprobs
    assert generated is not None and generated.tokens and generated.token_logprobs
    [token_id] = tokenize(http, prompt=generated.tokens[0], add_special_tokens=False)["tokens"]
    stopped = client.completions.create(model=LOCAL, prompt=PROMPT, max_tokens=1, temperature=0,
                                        echo=True, logprobs=0,
                                        extra_body={"stop_token_ids": [token_id]})
    choice = stopped.choices[0]
    assert choice.finish_reason == "stop" and choice.text == PROMPT  # its text is left out
    assert stopped.usage is not None and stopped.usage.completion_tokens == 1
    lp = choice.logprobs
    assert lp is not None and lp.tokens and lp.token_logprobs
    assert len(lp.tokens) == stopped.usage.prompt_tokens + 1
    assert lp.tokens[-1] == generated.tokens[0]
    assert lp.token_logprobs[-1] == pytest.approx(generated.token_logprobs[0], abs=1e-4)


def test_token_id_and_list_prompts_give_n_choices_each(client: openai.OpenAI,
                                                       http: httpx.Client) -> None:
    first, second = tokenize(http, prompt="Once upon a time")["tokens"], [504, 2365]
    scored = client.completions.create(model=LOCAL, prompt=[first, second], n=2, max_tokens=0,
                                       echo=True)
    assert [c.index for c in scored.choices] == [0, 1, 2, 3]
    texts = [c.text for c in scored.choices]
    detok = http.post("/detokenize", json={"model": LOCAL, "tokens": second}).json()["prompt"]
    assert texts == ["Once upon a time"] * 2 + [detok] * 2
    assert all(c.finish_reason == "length" and c.logprobs is None for c in scored.choices)
    assert scored.usage is not None
    assert (scored.usage.prompt_tokens, scored.usage.completion_tokens) == (len(first) + 2, 0)
    prompts = ["Paris is", "Rome is"]
    answer = client.completions.create(model=LOCAL, prompt=prompts, n=2, max_tokens=3,
                                       temperature=0)
    assert [c.index for c in answer.choices] == [0, 1, 2, 3]
    alone = [client.completions.create(model=LOCAL, prompt=p, max_tokens=3, temperature=0)
             .choices[0].text for p in prompts]
    assert [c.text for c in answer.choices] == [alone[0], alone[0], alone[1], alone[1]]
    assert answer.usage is not None and answer.usage.completion_tokens == 12


def test_refusals_name_the_field(client: openai.OpenAI, http: httpx.Client) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=LOCAL, prompt=PROMPT, suffix=" and so on.")
    assert caught.value.body["param"] == "suffix"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=LOCAL, prompt=[[99_999_999]], max_tokens=1)
    assert caught.value.body["param"] == "prompt"  # type: ignore[index]
    r = http.post("/v1/completions", json={"model": LOCAL, "prompt": "x" * 20_000,
                                           "max_tokens": 1})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    r = http.post("/v1/completions", json={"model": LOCAL, "prompt": PROMPT, "max_tokens": 1,
                                           "tools": [], "not_a_field": 1})
    assert r.status_code == 200
    assert r.headers["x-switchboard-ignored-params"] == "not_a_field,tools"
    r = http.post("/v1/chat/completions", json={
        "model": LOCAL, "messages": [{"role": "user", "content": "x"}], "echo": True})
    assert r.status_code == 400 and r.json()["error"]["param"] == "echo"


def test_the_key_model_list_and_the_ledger(completions_server: RunningServer) -> None:
    admin = httpx.Client(base_url=completions_server.base, timeout=30,
                         headers={"authorization": f"Bearer {ADMIN_KEY}"})
    created = admin.post("/admin/keys", json={"name": "remote-only", "models": [REMOTE]})
    assert created.status_code == 201, created.text
    key = created.json()
    other = openai.OpenAI(base_url=completions_server.v1, api_key=key["key"], max_retries=0,
                          timeout=60)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        other.completions.create(model=LOCAL, prompt=PROMPT, max_tokens=1)
    assert caught.value.status_code == 403
    assert caught.value.body["code"] == "model_not_allowed"  # type: ignore[index]
    for path, body in (("/tokenize", {"prompt": PROMPT}), ("/detokenize", {"tokens": [1]})):
        r = httpx.post(completions_server.base + path, json={"model": LOCAL, **body},
                       headers={"authorization": f"Bearer {key['key']}"})
        assert r.status_code == 403 and r.json()["error"]["param"] == "model"
    other.completions.create(model=REMOTE, prompt=PROMPT, max_tokens=2)
    other.completions.create(model=REMOTE, prompt=PROMPT, max_tokens=2, n=2)
    assert list(other.completions.create(model=REMOTE, prompt=PROMPT, max_tokens=2,
                                         stream=True))
    rows = admin.get("/admin/usage", params={"key_id": key["id"]}).json()["data"]
    admin.close()
    assert sorted((row["status"], row["endpoint"]) for row in rows) == [
        (200, "completions")] * 3 + [(403, "completions")]
    assert [row["stream"] for row in rows if row["status"] == 200].count(True) == 1
    assert len({row["request_id"] for row in rows}) == 4


def test_tokenize_and_detokenize_are_the_engines_tokens(client: openai.OpenAI,
                                                        http: httpx.Client) -> None:
    text = "Hello <|im_start|> world, 1234!"
    answer = tokenize(http, prompt=text, return_token_strs=True)
    assert answer["count"] == len(answer["tokens"]) and answer["max_model_len"] > 0
    assert "".join(answer["token_strs"]) == text
    assert 1 in answer["tokens"]  # the special token's text is the special token
    back = http.post("/detokenize", json={"model": LOCAL, "tokens": answer["tokens"]})
    assert back.status_code == 200 and back.json() == {"prompt": text}
    echoed = client.completions.create(model=LOCAL, prompt=text, max_tokens=0, echo=True,
                                       logprobs=0)
    assert echoed.usage is not None and echoed.usage.prompt_tokens == answer["count"]
    assert echoed.choices[0].logprobs.tokens == answer["token_strs"]  # type: ignore[union-attr]
    same_ids = client.completions.create(model=LOCAL, prompt=answer["tokens"], max_tokens=0,
                                         echo=True, logprobs=0)
    assert same_ids.choices[0].logprobs == echoed.choices[0].logprobs
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    chat = client.chat.completions.create(model=LOCAL, messages=messages,  # type: ignore[arg-type]
                                          max_tokens=1)
    assert chat.usage is not None
    assert tokenize(http, messages=messages)["count"] == chat.usage.prompt_tokens
    for body in ({"model": REMOTE, "prompt": "x"}, {"model": REMOTE, "tokens": [1]}):
        path = "/tokenize" if "prompt" in body else "/detokenize"
        r = http.post(path, json=body)
        assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    r = http.post("/detokenize", json={"model": LOCAL, "tokens": [99_999_999]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tokens"


def test_an_upstream_is_reached_by_translation_to_chat(client: openai.OpenAI,
                                                       server: RunningServer) -> None:
    completion = client.completions.create(model=REMOTE, prompt=PROMPT, max_tokens=6,
                                           temperature=0, logprobs=2)
    upstream = openai.OpenAI(base_url=server.v1, api_key=API_KEY, max_retries=0, timeout=120)
    direct = upstream.chat.completions.create(
        model="smollm2-135m-instruct", messages=[{"role": "user", "content": PROMPT}],
        max_tokens=6, temperature=0, logprobs=True, top_logprobs=2)
    assert completion.object == "text_completion"
    assert completion.choices[0].text == direct.choices[0].message.content
    lp = completion.choices[0].logprobs
    assert lp is not None and lp.tokens == [
        t.token for t in direct.choices[0].logprobs.content]  # type: ignore[union-attr]
    assert completion.usage is not None and completion.usage.completion_tokens == 6
    for body, param in (({"echo": True}, "echo"), ({"prompt": [1, 2]}, "prompt"),
                        ({"prompt": ["a", "b"]}, "prompt")):
        with pytest.raises(openai.BadRequestError) as caught:
            client.completions.create(**{"model": REMOTE, "prompt": PROMPT, "max_tokens": 1,
                                         **body})
        assert caught.value.body["param"] == param  # type: ignore[index]


def test_the_tokenizer_endpoints_refuse_an_upstream_model(http: httpx.Client) -> None:
    """An upstream's tokenizer is not this server's: a 400 naming ``model``, never a guess."""
    for path, body in (("/tokenize", {"prompt": "Hello"}), ("/detokenize", {"tokens": [1, 2]})):
        r = http.post(path, json={"model": REMOTE, **body})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert (error["param"], error["code"]) == ("model", "unsupported_model")
