"""JSON Schemas for the structured-output tests: nested objects, bounded arrays, enums, anyOf,
number ranges, string patterns and formats, optional and required properties."""

from __future__ import annotations

from typing import Any

S = {"type": "string", "maxLength": 24}
I = {"type": "integer", "minimum": -1000, "maximum": 1000}  # unbounded digits could run on
N = {"type": "number", "minimum": -1000, "maximum": 1000, "multipleOf": 0.25}  # digits end

SCHEMAS: list[tuple[str, dict[str, Any]]] = [
    ("flat object", {"type": "object", "properties": {"name": S, "age": I},
                     "required": ["name", "age"], "additionalProperties": False}),
    ("integer range", {"type": "object", "properties": {"n": {"type": "integer", "minimum": 10, "maximum": 20}},
                       "required": ["n"], "additionalProperties": False}),
    ("number exclusive range", {"type": "object", "properties": {"x": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "multipleOf": 0.125}},
                                "required": ["x"], "additionalProperties": False}),
    ("enum", {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]}},
              "required": ["color"], "additionalProperties": False}),
    ("const", {"type": "object", "properties": {"kind": {"const": "event"}, "id": I},
               "required": ["kind", "id"], "additionalProperties": False}),
    ("boolean and null", {"type": "object", "properties": {"ok": {"type": "boolean"}, "note": {"type": "null"}},
                          "required": ["ok", "note"], "additionalProperties": False}),
    ("bounded array", {"type": "object", "properties": {"tags": {"type": "array", "items": S, "minItems": 2, "maxItems": 4}},
                       "required": ["tags"], "additionalProperties": False}),
    ("array of integers", {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "minItems": 1, "maxItems": 5}),
    ("nested object", {"type": "object", "properties": {
        "user": {"type": "object", "properties": {"name": S, "address": {"type": "object", "properties": {
            "city": S, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}}, "required": ["city", "zip"], "additionalProperties": False}},
            "required": ["name", "address"], "additionalProperties": False}},
        "required": ["user"], "additionalProperties": False}),
    ("array of objects", {"type": "object", "properties": {"items": {"type": "array", "maxItems": 3, "items": {
        "type": "object", "properties": {"sku": S, "qty": {"type": "integer", "minimum": 1, "maximum": 99}},
        "required": ["sku", "qty"], "additionalProperties": False}}}, "required": ["items"], "additionalProperties": False}),
    ("anyOf scalar", {"type": "object", "properties": {"v": {"anyOf": [I, {"type": "string", "maxLength": 10}]}},
                      "required": ["v"], "additionalProperties": False}),
    ("anyOf objects", {"anyOf": [
        {"type": "object", "properties": {"cat": S}, "required": ["cat"], "additionalProperties": False},
        {"type": "object", "properties": {"dog": S}, "required": ["dog"], "additionalProperties": False}]}),
    ("string pattern", {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{3}$"}},
                        "required": ["code"], "additionalProperties": False}),
    ("format date", {"type": "object", "properties": {"day": {"type": "string", "format": "date"}},
                     "required": ["day"], "additionalProperties": False}),
    ("format email", {"type": "object", "properties": {"email": {"type": "string", "format": "email", "maxLength": 40}},
                      "required": ["email"], "additionalProperties": False}),
    ("format uuid", {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}},
                     "required": ["id"], "additionalProperties": False}),
    ("format date-time", {"type": "object", "properties": {"at": {"type": "string", "format": "date-time", "maxLength": 32}},
                          "required": ["at"], "additionalProperties": False}),
    ("string lengths", {"type": "object", "properties": {"word": {"type": "string", "minLength": 3, "maxLength": 6}},
                        "required": ["word"], "additionalProperties": False}),
    ("optional properties", {"type": "object", "properties": {"a": S, "b": I, "c": {"type": "boolean"}},
                             "required": ["a"], "additionalProperties": False}),
    ("nullable", {"type": "object", "properties": {"middle": {"type": ["string", "null"], "maxLength": 12}},
                  "required": ["middle"], "additionalProperties": False}),
    ("refs and defs", {"$defs": {"point": {"type": "object", "properties": {"x": I, "y": I},
                                           "required": ["x", "y"], "additionalProperties": False}},
                       "type": "object", "properties": {"from": {"$ref": "#/$defs/point"}, "to": {"$ref": "#/$defs/point"}},
                       "required": ["from", "to"], "additionalProperties": False}),
    ("top-level enum", {"enum": ["low", "medium", "high"]}),
    ("top-level integer", {"type": "integer", "minimum": -5, "maximum": 5}),
    ("top-level string", {"type": "string", "maxLength": 30}),
    ("tuple prefixItems", {"type": "array", "prefixItems": [{"type": "string", "maxLength": 8}, I], "items": False}),
    ("uniqueness-free matrix", {"type": "array", "maxItems": 2, "items": {"type": "array", "maxItems": 2, "items": N}}),
    ("multiple required", {"type": "object", "properties": {"title": S, "year": {"type": "integer", "minimum": 1900, "maximum": 2100},
                                                          "rating": {"type": "number", "minimum": 0, "maximum": 5, "multipleOf": 0.5}, "genre": {"enum": ["drama", "comedy"]}},
                           "required": ["title", "year", "rating", "genre"], "additionalProperties": False}),
    ("open object", {"type": "object", "properties": {"id": I}, "required": ["id"], "maxProperties": 3,
                     "additionalProperties": {"type": "string", "maxLength": 10}}),
    ("oneOf", {"oneOf": [{"type": "object", "properties": {"ok": {"const": True}}, "required": ["ok"], "additionalProperties": False},
                         {"type": "object", "properties": {"error": S}, "required": ["error"], "additionalProperties": False}]}),
    ("allOf", {"allOf": [{"type": "object", "properties": {"a": I}, "required": ["a"]},
                         {"type": "object", "properties": {"b": {"type": "boolean"}}, "required": ["b"]}],
               "additionalProperties": False, "properties": {"a": {}, "b": {}}}),
    ("deep nesting", {"type": "object", "properties": {"l1": {"type": "object", "properties": {"l2": {"type": "object", "properties": {
        "l3": {"type": "array", "maxItems": 2, "items": {"enum": [1, 2, 3]}}}, "required": ["l3"], "additionalProperties": False}},
        "required": ["l2"], "additionalProperties": False}}, "required": ["l1"], "additionalProperties": False}),
    ("multipleOf-free percentages", {"type": "object", "properties": {"pct": {"type": "integer", "minimum": 0, "maximum": 100}},
                                     "required": ["pct"], "additionalProperties": False}),
]

# A person whose keys, punctuation and enum rests the grammar forces (the fast-forward and
# speculative-decoding tests share it).
PERSON: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer"},
        "city": {"enum": ["Paris", "London", "Tokyo", "Buenos Aires"]},
        "languages": {"type": "array", "items": {"type": "string", "maxLength": 16},
                      "maxItems": 3},
    },
    "required": ["name", "age", "city", "languages"],
    "additionalProperties": False,
}
