"""The request model: every field, ranges, combinations, unknown fields."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from switchboard.protocol import ChatCompletionRequest

MSG = [{"role": "user", "content": "hi"}]


def make(**fields: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"messages": MSG, **fields})


@pytest.mark.parametrize(
    "field,value",
    [
        ("temperature", 2.5),
        ("temperature", -0.1),
        ("top_p", 1.5),
        ("top_logprobs", 21),
        ("n", 0),
        ("frequency_penalty", 3),
        ("presence_penalty", -3),
        ("max_tokens", 0),
        ("max_completion_tokens", -1),
        ("min_p", 2),
        ("logit_bias", {"abc": 1}),
        ("logit_bias", {"5": 101}),
        ("stop", [""]),
        ("messages", []),
        ("seed", 2**64),  # past 64 bits (vLLM's bound too)
        # Every number is bounded (issue 21: length_penalty 1000 crashed the engine step).
        ("length_penalty", 1000),
        ("length_penalty", -1000),
        ("length_penalty", 10.01),
        ("repetition_penalty", 0.001),
        ("repetition_penalty", 10.5),
        ("top_k", 2**31),
        ("top_k", -2),
        ("min_tokens", 2**31),
        ("max_tokens", 2**31),
        ("max_completion_tokens", 2**31),
        ("best_of", 129),
        ("n", 129),
        ("stop_token_ids", [-1]),
        ("stop_token_ids", [2**31]),
        ("logit_bias", {"-5": 1}),
        ("logit_bias", {"99999999999": 1}),
        ("logit_bias", {"\u0663": 1}),  # a non-ASCII digit
        ("logit_bias", {"5": float("nan")}),
        ("temperature", float("inf")),
    ],
)
def test_out_of_range_values_are_rejected(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        make(**{field: value})


def test_extreme_values_inside_the_ranges_are_accepted() -> None:
    req = make(
        length_penalty=-10, repetition_penalty=0.01, top_k=2**31 - 1, max_tokens=2**31 - 1,
        min_tokens=2**31 - 1, stop_token_ids=[0, 2**31 - 1], logit_bias={"2147483647": -100},
        best_of=128, n=128, temperature=1e-300, top_p=0.0,
    )
    assert req.length_penalty == -10 and req.logit_bias == {"2147483647": -100}
    assert make(length_penalty=10).length_penalty == 10


def test_top_logprobs_needs_logprobs() -> None:
    with pytest.raises(ValidationError, match="top_logprobs requires logprobs"):
        make(top_logprobs=3)
    assert make(top_logprobs=3, logprobs=True).top_logprobs == 3


def test_best_of_at_least_n() -> None:
    with pytest.raises(ValidationError):
        make(n=3, best_of=2)


def test_min_tokens_at_most_the_completion_limit() -> None:
    with pytest.raises(ValidationError, match="min_tokens"):
        make(min_tokens=10, max_tokens=5)
    with pytest.raises(ValidationError, match="min_tokens"):
        make(min_tokens=10, max_tokens=50, max_completion_tokens=5)
    assert make(min_tokens=5, max_tokens=5).min_tokens == 5
    assert make(min_tokens=500).min_tokens == 500


def test_extensions_parse() -> None:
    req = make(
        top_k=40, min_p=0.05, use_beam_search=True, best_of=4, length_penalty=1.2,
        early_stopping=True, guided_json={"type": "object"}, guided_regex="a+",
        guided_choice=["a", "b"], api_key_ref="my-key",
        tools=[{"type": "retrieval", "retrieval": {"bucket_ids": ["docs"], "max_num_results": 3}}],
    )
    assert req.tools and req.tools[0].type == "retrieval"
    assert req.ignored_params == []


def test_unknown_fields_are_kept_and_named() -> None:
    req = make(frobnicate=1, another_one="x")
    assert req.ignored_params == ["another_one", "frobnicate"]


def test_max_completion_tokens_wins() -> None:
    assert make(max_tokens=10, max_completion_tokens=5).completion_limit == 5
    assert make(max_tokens=10).completion_limit == 10


def test_all_message_roles_and_content_parts() -> None:
    req = ChatCompletionRequest.model_validate(
        {
            "messages": [
                {"role": "developer", "content": "d"},
                {"role": "system", "content": [{"type": "text", "text": "s"}]},
                {"role": "user", "content": [{"type": "text", "text": "u"}]},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "42"},
            ]
        }
    )
    assert [m.role for m in req.messages] == ["developer", "system", "user", "assistant", "tool"]


def test_standard_fields_come_first_in_openai_order() -> None:
    names = list(ChatCompletionRequest.model_fields)
    assert names[:4] == ["messages", "model", "audio", "frequency_penalty"]
    assert names.index("web_search_options") < names.index("top_k")
