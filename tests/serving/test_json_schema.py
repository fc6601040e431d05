"""Schemas as the grammar enforces them: objects refuse undeclared properties unless they allow
them (issue 23 item 2), integers stay in I-JSON's range."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import llguidance
import pytest

from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.serving.constraints import requested_grammar
from switchboard.serving.json_schema import grammar_schema

# instructor's Mode.TOOLS schema for ``class User(BaseModel): name: str; age: int``
USER = {"properties": {"name": {"title": "Name", "type": "string"},
                       "age": {"title": "Age", "type": "integer"}},
        "required": ["name", "age"], "title": "User", "type": "object"}
INVENTED = {"name": "Jason", "age": 25, "role": "admin", "type": "string", "required": ["name"]}


def matches(grammar: str, text: str) -> bool:
    """Whether an llguidance grammar matches ``text`` exactly (byte by byte)."""
    tokenizer = llguidance.LLTokenizer("byte")
    matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
    return all(matcher.consume_token(b) for b in tokenizer.tokenize_bytes(text.encode())) \
        and matcher.is_accepting()


def accepts(schema: dict[str, Any], value: Any) -> bool:
    """Whether ``response_format: json_schema`` with ``schema`` lets the model write ``value``
    (compactly, as the grammar writes JSON)."""
    req = ChatCompletionRequest.model_validate({
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
    })
    wanted = requested_grammar(req)
    assert wanted is not None
    return matches(wanted.grammar, json.dumps(value))


def objects_only(schema: Any) -> Any:
    """``schema`` without the integer bounds ``grammar_schema`` adds (to compare the rest)."""
    if isinstance(schema, list):
        return [objects_only(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    added = schema.get("type") == "integer" and schema.get("maximum") == 2**53 - 1
    return {k: objects_only(v) for k, v in schema.items()
            if not (added and k in ("minimum", "maximum"))}


def test_undeclared_properties_are_refused_when_the_schema_is_silent() -> None:
    closed = grammar_schema(USER)
    assert closed["additionalProperties"] is False
    assert USER.get("additionalProperties") is None  # the request's schema is not modified
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(INVENTED, closed)
    jsonschema.validate({"name": "Jason", "age": 25}, closed)


def test_the_compiled_grammar_refuses_invented_keys() -> None:
    assert accepts(USER, {"name": "Jason", "age": 25})
    assert not accepts(USER, INVENTED)


@pytest.mark.parametrize("allowance", [True, {"type": "integer"}])
def test_a_schema_that_allows_more_keeps_its_rule(allowance: Any) -> None:
    schema = {**USER, "additionalProperties": allowance}
    assert objects_only(grammar_schema(schema)) == schema
    assert accepts(schema, {"name": "Jason", "age": 25, "extra": 1})


def test_strict_schemas_are_unchanged_and_bare_objects_stay_open() -> None:
    strict = {**USER, "additionalProperties": False}
    assert objects_only(grammar_schema(strict)) == strict
    assert grammar_schema({"type": "object"}) == {"type": "object"}
    assert accepts({"type": "object"}, {"anything": [1, 2]})


def test_nested_objects_definitions_and_array_items_are_closed() -> None:
    schema = {
        "type": "object",
        "properties": {"owner": {"$ref": "#/$defs/User"},
                       "pets": {"type": "array", "items": {"type": "object",
                                                           "properties": {"n": {}}}}},
        "$defs": {"User": USER},
        "anyOf": [{"required": ["owner"]}, {"required": ["pets"]}],
    }
    closed = grammar_schema(schema)
    assert closed["additionalProperties"] is False
    assert closed["$defs"]["User"]["additionalProperties"] is False
    assert closed["properties"]["pets"]["items"]["additionalProperties"] is False
    assert closed["anyOf"] == schema["anyOf"]  # parts of the object, not objects of their own


def test_all_of_parts_are_one_object_and_required_names_stay_allowed() -> None:
    schema = {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}},
                        {"type": "object", "properties": {"b": {"type": "integer"}}}],
              "required": ["a", "b", "c"]}
    closed = grammar_schema(schema)
    assert closed["additionalProperties"] is False
    assert set(closed["properties"]) == {"a", "b", "c"}
    assert all("additionalProperties" not in part for part in closed["allOf"])
    jsonschema.validate({"a": 1, "b": 2, "c": 3}, closed)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"a": 1, "b": 2, "c": 3, "d": 4}, closed)


def test_alternatives_are_closed_each_on_its_own() -> None:
    schema = {"anyOf": [{"type": "object", "properties": {"cat": {"type": "string"}}},
                        {"type": "object", "properties": {"dog": {"type": "string"}}}]}
    closed = grammar_schema(schema)
    assert [b["additionalProperties"] for b in closed["anyOf"]] == [False, False]
    assert accepts(schema, {"cat": "x"}) and not accepts(schema, {"cat": "x", "dog": "y"})


SAFE = 2**53 - 1  # RFC 7493's interoperable integers


def test_integers_without_bounds_are_held_to_i_json_range() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    assert grammar_schema(schema)["properties"]["n"] == {
        "type": "integer", "minimum": -SAFE, "maximum": SAFE}
    for n in (0, -7, SAFE, -SAFE):
        assert accepts(schema, {"n": n}), n
    for n in (SAFE + 1, -SAFE - 1, 3 * 10**40):  # a model sampling digits must stop
        assert not accepts(schema, {"n": n}), n


def test_an_integer_keeps_the_bounds_it_states() -> None:
    schema = {"type": "object", "properties": {
        "small": {"type": "integer", "maximum": 9},
        "positive": {"type": "integer", "exclusiveMinimum": 0}}}
    props = grammar_schema(schema)["properties"]
    assert props["small"] == {"type": "integer", "maximum": 9, "minimum": -SAFE}
    assert props["positive"] == {"type": "integer", "exclusiveMinimum": 0, "maximum": SAFE}
    assert accepts(schema, {"small": -4, "positive": 12})
    assert not accepts(schema, {"small": 10}) and not accepts(schema, {"positive": 0})
