"""Object schemas refuse undeclared properties unless they allow them (issue 23 item 2)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import llguidance
import pytest

from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.serving.constraints import requested_grammar
from switchboard.serving.json_schema import closed_objects

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


def test_undeclared_properties_are_refused_when_the_schema_is_silent() -> None:
    closed = closed_objects(USER)
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
    assert closed_objects(schema) == schema
    assert accepts(schema, {"name": "Jason", "age": 25, "extra": 1})


def test_strict_schemas_are_unchanged_and_bare_objects_stay_open() -> None:
    strict = {**USER, "additionalProperties": False}
    assert closed_objects(strict) == strict
    assert closed_objects({"type": "object"}) == {"type": "object"}
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
    closed = closed_objects(schema)
    assert closed["additionalProperties"] is False
    assert closed["$defs"]["User"]["additionalProperties"] is False
    assert closed["properties"]["pets"]["items"]["additionalProperties"] is False
    assert closed["anyOf"] == schema["anyOf"]  # parts of the object, not objects of their own


def test_all_of_parts_are_one_object_and_required_names_stay_allowed() -> None:
    schema = {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}},
                        {"type": "object", "properties": {"b": {"type": "integer"}}}],
              "required": ["a", "b", "c"]}
    closed = closed_objects(schema)
    assert closed["additionalProperties"] is False
    assert set(closed["properties"]) == {"a", "b", "c"}
    assert all("additionalProperties" not in part for part in closed["allOf"])
    jsonschema.validate({"a": 1, "b": 2, "c": 3}, closed)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"a": 1, "b": 2, "c": 3, "d": 4}, closed)


def test_alternatives_are_closed_each_on_its_own() -> None:
    schema = {"anyOf": [{"type": "object", "properties": {"cat": {"type": "string"}}},
                        {"type": "object", "properties": {"dog": {"type": "string"}}}]}
    closed = closed_objects(schema)
    assert [b["additionalProperties"] for b in closed["anyOf"]] == [False, False]
    assert accepts(schema, {"cat": "x"}) and not accepts(schema, {"cat": "x", "dog": "y"})
