"""Structured output through the HTTP API with the official SDK: every request form, enforced."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jsonschema
import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel, Field

from tests.conftest import API_KEY, RunningServer
from tests.data.schemas import SCHEMAS

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def client(server: RunningServer) -> OpenAI:
    return OpenAI(base_url=server.v1 + "/", api_key=API_KEY, max_retries=0, timeout=120)


def ask(client: OpenAI, content: str, **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}], **kwargs
    )


def validate(schema: dict, text: str) -> None:
    jsonschema.validate(
        json.loads(text), schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def test_every_schema_is_enforced_under_16_concurrent_requests(client: OpenAI) -> None:
    def constrained(item: tuple[str, dict]) -> tuple[str, dict, Any]:
        name, schema = item
        reply = ask(client, f"Produce JSON for: {name}.", max_tokens=400,
                    temperature=0.8, seed=7, extra_body={"guided_json": schema})
        return name, schema, reply.choices[0]

    def free(i: int) -> str:
        return ask(client, f"Say something about {i}.", max_tokens=40).choices[0].finish_reason

    with ThreadPoolExecutor(16) as pool:
        frees = [pool.submit(free, i) for i in range(8)]
        results = list(pool.map(constrained, SCHEMAS))
    assert len(SCHEMAS) >= 30
    for name, schema, choice in results:
        assert choice.finish_reason == "stop", (name, choice.message.content)
        validate(schema, choice.message.content)
    assert all(f.result() in ("stop", "length") for f in frees)


@pytest.mark.parametrize(
    "pattern",
    [r"\d{3}-\d{4}", r"(yes|no|maybe)", r"[A-Z][a-z]{2,8} [A-Z][a-z]{2,8}",
     r"20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9])", r"#[0-9a-f]{6}", r"[a-z_]{3,12}\(\)"],
)
def test_regex_is_enforced(client: OpenAI, pattern: str) -> None:
    reply = ask(client, "Answer.", max_tokens=40, temperature=1.0,
                extra_body={"guided_regex": pattern})
    assert reply.choices[0].finish_reason == "stop"
    assert re.fullmatch(pattern, reply.choices[0].message.content, flags=re.ASCII)


def test_choice_is_enforced_with_n_choices_streamed(client: OpenAI) -> None:
    choices = ["positive", "negative", "neutral"]
    stream = ask(client, "Sentiment of: I love it!", max_tokens=10, n=3, stream=True,
                 temperature=1.0, extra_body={"guided_choice": choices})
    texts = {0: "", 1: "", 2: ""}
    for chunk in stream:
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
    assert all(t in choices for t in texts.values())


def test_beam_search_keeps_every_beam_inside_the_constraint(client: OpenAI) -> None:
    """Each beam follows its own grammar state; the n best beams all validate."""
    schema = {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 12},
        "rank": {"type": "integer", "minimum": 1, "maximum": 9}},
        "required": ["city", "rank"], "additionalProperties": False}
    reply = ask(client, "Name a big city and rank it.", max_tokens=40, n=3,
                extra_body={"guided_json": schema, "use_beam_search": True, "best_of": 4})
    assert len(reply.choices) == 3
    for choice in reply.choices:
        assert choice.finish_reason == "stop"
        jsonschema.validate(json.loads(choice.message.content), schema)
    choices = ["alpha", "beta", "gamma"]
    reply = ask(client, "Pick one.", max_tokens=10, n=2,
                extra_body={"guided_choice": choices, "use_beam_search": True, "best_of": 3})
    assert len(reply.choices) == 2 and {c.message.content for c in reply.choices} <= set(choices)


@pytest.mark.parametrize(
    "extra,check",
    [
        ({"structured_outputs": {"json": {"type": "object",
                                          "properties": {"n": {"type": "integer"}},
                                          "required": ["n"], "additionalProperties": False}}},
         lambda t: isinstance(json.loads(t)["n"], int)),
        ({"structured_outputs": {"regex": r"[0-9]{4}"}}, lambda t: re.fullmatch(r"[0-9]{4}", t)),
        ({"structured_outputs": {"choice": ["left", "right"]}}, lambda t: t in ("left", "right")),
        ({"structured_outputs": {"grammar": 'root ::= "ab" [0-9] [0-9]? "!"'}},  # GBNF
         lambda t: re.fullmatch(r"ab[0-9]{1,2}!", t)),
        ({"guided_grammar": 'start: "x" | "x-y" | "x-y-y"'}, lambda t: t in ("x", "x-y", "x-y-y")),
        ({"response_format": {"type": "json_object"}}, lambda t: isinstance(json.loads(t), dict)),
    ],
)
def test_other_request_forms(client: OpenAI, extra: dict, check: Any) -> None:
    reply = ask(client, "Describe a cat as a JSON object.", max_tokens=200, temperature=0,
                extra_body=extra)
    assert reply.choices[0].finish_reason == "stop"
    assert check(reply.choices[0].message.content)


def test_response_format_json_schema_and_sdk_parse(client: OpenAI) -> None:
    class Person(BaseModel):
        name: str = Field(max_length=20)
        age: int = Field(ge=0, le=150)

    parsed = client.chat.completions.parse(
        model=MODEL, messages=[{"role": "user", "content": "A person."}],
        response_format=Person, max_tokens=120, temperature=0,
    )
    assert isinstance(parsed.choices[0].message.parsed, Person)
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
              "additionalProperties": False}
    reply = ask(client, "Ok?", max_tokens=20, response_format={
        "type": "json_schema", "json_schema": {"name": "ok", "schema": schema, "strict": True}})
    validate(schema, reply.choices[0].message.content)


def test_constraint_cut_by_max_tokens_says_length(client: OpenAI) -> None:
    schema = {"type": "array", "items": {"type": "integer"}, "minItems": 50}
    reply = ask(client, "Numbers.", max_tokens=8, extra_body={"guided_json": schema})
    assert reply.choices[0].finish_reason == "length"


@pytest.mark.parametrize(
    "extra,param",
    [
        ({"guided_regex": "(("}, "guided_regex"),
        ({"guided_json": {"type": "string", "format": "no-such-format"}}, "guided_json"),
        ({"guided_json": "{not json"}, "guided_json"),
        ({"guided_choice": []}, "guided_choice"),
        ({"guided_grammar": "root ::= ("}, "guided_grammar"),
        ({"guided_regex": "a", "guided_choice": ["a"]}, "guided_choice"),
        ({"guided_json": {"type": "object"}, "response_format": {"type": "json_object"}},
         "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
         "response_format"),
    ],
)
def test_bad_constraints_are_400_naming_the_parameter(
    client: OpenAI, extra: dict, param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        ask(client, "x", max_tokens=5, extra_body=extra)
    assert err.value.body["param"] == param  # type: ignore[index]
