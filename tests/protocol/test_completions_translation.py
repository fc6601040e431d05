"""The completions wire models and their translation to and from the canonical chat request and
answers (pure functions, no server)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.protocol.completions import CompletionRequest
from switchboard.protocol.completions_translation import (
    CompletionStream,
    UntranslatableRequest,
    to_chat_request,
    to_completion,
    upstream_refusal,
)


def request(**fields: Any) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "m", "prompt": "Once upon", **fields})


def test_a_string_prompt_is_a_raw_prompt_and_one_user_message() -> None:
    chat = to_chat_request(request(temperature=0.5, top_k=7, guided_regex="[a-z]+", seed=3))
    assert chat.raw_prompts == ["Once upon"]
    assert chat.wire() == {
        "model": "m", "messages": [{"role": "user", "content": "Once upon"}], "n": 1,
        "max_tokens": 16, "stream": False, "temperature": 0.5, "top_k": 7,
        "guided_regex": "[a-z]+", "seed": 3,
    }
    assert "raw_prompts" not in chat.wire()


def test_logprobs_and_echo_become_chat_logprobs_and_prompt_logprobs() -> None:
    chat = to_chat_request(request(logprobs=3, echo=True, max_tokens=0))
    assert (chat.logprobs, chat.top_logprobs, chat.echo, chat.prompt_logprobs) == (True, 3, True, 3)
    assert chat.completion_limit == 0
    plain = to_chat_request(request(logprobs=0))
    assert (plain.logprobs, plain.top_logprobs, plain.echo, plain.prompt_logprobs) == (
        True, 0, None, None)


@pytest.mark.parametrize(("prompt", "prompts"), [
    ("a", ["a"]), (["a", "b"], ["a", "b"]), ([1, 2, 3], [[1, 2, 3]]),
    ([[1, 2], [3]], [[1, 2], [3]]),
])
def test_every_prompt_shape_is_read(prompt: Any, prompts: list[Any]) -> None:
    assert to_chat_request(request(prompt=prompt)).raw_prompts == prompts


@pytest.mark.parametrize("prompt", [[], [[]], ["a", [1]], [-1], [[2**31]], None])
def test_malformed_prompts_are_refused(prompt: Any) -> None:
    with pytest.raises(ValidationError):
        request(prompt=prompt)


def test_suffix_is_refused_by_name() -> None:
    with pytest.raises(UntranslatableRequest) as caught:
        to_chat_request(request(suffix=" the end."))
    assert caught.value.param == "suffix"
    assert to_chat_request(request(suffix="")).raw_prompts == ["Once upon"]  # asks nothing


def test_max_tokens_zero_needs_echo_in_both_requests() -> None:
    with pytest.raises(ValidationError, match="echo"):
        request(max_tokens=0)
    with pytest.raises(ValidationError, match="echo"):
        ChatCompletionRequest.model_validate(
            {"messages": [{"role": "user", "content": "x"}], "max_tokens": 0})


def test_a_client_cannot_send_raw_prompts_to_chat() -> None:
    with pytest.raises(ValidationError, match="raw_prompts"):
        ChatCompletionRequest.model_validate(
            {"messages": [{"role": "user", "content": "x"}], "raw_prompts": ["verbatim"]})
    assert "raw_prompts" not in ChatCompletionRequest.model_json_schema()["properties"]


def test_unknown_fields_are_kept_and_chat_only_names_dropped() -> None:
    req = request(best_of_luck=1, messages=[{"role": "user", "content": "x"}], tools=[])
    assert req.ignored_params == ["best_of_luck", "messages", "tools"]
    chat = to_chat_request(req)
    assert chat.ignored_params == ["best_of_luck"]  # forwarded like a chat request's
    assert chat.messages[0].content == "Once upon" and chat.tools is None


def test_too_many_choices_are_refused() -> None:
    with pytest.raises(UntranslatableRequest) as caught:
        to_chat_request(request(prompt=["a"] * 10, n=13))
    assert caught.value.param == "prompt"


def test_what_an_upstream_cannot_take_is_named() -> None:
    assert upstream_refusal(request()) is None
    assert upstream_refusal(request(prompt=["a", "b"])).param == "prompt"  # type: ignore[union-attr]
    assert upstream_refusal(request(prompt=[1, 2])).param == "prompt"  # type: ignore[union-attr]
    assert upstream_refusal(request(echo=True)).param == "echo"  # type: ignore[union-attr]


def _entry(token: str, logprob: float | None, top: dict[str, float]) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode()),
            "top_logprobs": [{"token": t, "logprob": v, "bytes": None} for t, v in top.items()]}


CHAT_ANSWER: dict[str, Any] = {
    "id": "chatcmpl-abc", "object": "chat.completion", "created": 5, "model": "m",
    "system_fingerprint": "fp", "service_tier": "default",
    "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4},
    "metrics": {"cost_usd": 0.0},
    "choices": [{
        "index": 0, "finish_reason": "length",
        "message": {"role": "assistant", "content": "Hi there you"},
        "prompt_logprobs": [_entry("Hi", None, {}), _entry(" there", -1.5, {" all": -0.5})],
        "logprobs": {"content": [_entry(" you", -0.25, {" you": -0.25, " me": -2.0})]},
    }],
}


def test_an_answer_becomes_a_text_completion_with_legacy_logprobs() -> None:
    completion = to_completion(CHAT_ANSWER, want_logprobs=True)
    assert completion["id"] == "cmpl-abc" and completion["object"] == "text_completion"
    assert completion["usage"] == CHAT_ANSWER["usage"]
    assert completion["metrics"] == CHAT_ANSWER["metrics"]
    assert "service_tier" not in completion
    choice = completion["choices"][0]
    assert choice["text"] == "Hi there you" and choice["finish_reason"] == "length"
    assert choice["logprobs"] == {
        "tokens": ["Hi", " there", " you"],
        "token_logprobs": [None, -1.5, -0.25],
        # the chosen token is always among the alternatives, as OpenAI sends them
        "top_logprobs": [None, {" all": -0.5, " there": -1.5}, {" you": -0.25, " me": -2.0}],
        "text_offset": [0, 2, 8],
    }
    assert to_completion(CHAT_ANSWER, want_logprobs=False)["choices"][0]["logprobs"] is None


def test_stream_chunks_keep_each_choices_text_offset() -> None:
    stream = CompletionStream(want_logprobs=True)
    base = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    role = {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
    assert stream.feed(role) is None
    first = stream.feed({**base, "choices": [{
        "index": 0, "delta": {"content": "Hi there"},
        "prompt_logprobs": CHAT_ANSWER["choices"][0]["prompt_logprobs"]}]})
    assert first is not None and first["object"] == "text_completion"
    assert first["choices"][0]["logprobs"]["text_offset"] == [0, 2]
    second = stream.feed({**base, "choices": [{
        "index": 0, "delta": {"content": " you"},
        "logprobs": CHAT_ANSWER["choices"][0]["logprobs"]}]})
    assert second is not None and second["choices"][0]["logprobs"]["text_offset"] == [8]
    end = stream.feed({**base, "choices": [{"index": 0, "delta": {},
                                             "finish_reason": "stop"}]})
    assert end is not None and end["choices"] == [
        {"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}]
    usage = stream.feed({**base, "choices": [], "usage": {"prompt_tokens": 2}})
    assert usage is not None and usage["choices"] == [] and usage["usage"]["prompt_tokens"] == 2


def test_a_malformed_prompt_gets_one_error_naming_the_shapes() -> None:
    with pytest.raises(ValidationError) as caught:
        request(prompt=["a", [1]])
    [error] = caught.value.errors()
    assert error["loc"] == ("prompt",) and "list of token-id lists" in error["msg"]
    with pytest.raises(ValidationError) as caught:
        request(prompt=["a"] * 129)
    [error] = caught.value.errors()
    assert (error["type"], error["loc"]) == ("too_many_prompts", ("prompt",))
