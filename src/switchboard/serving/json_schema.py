"""JSON Schemas as the grammar enforces them: objects closed to undeclared properties, as vLLM
(xgrammar) and llama.cpp compile them, and integers held to the range every JSON reader keeps
exactly.

Plain JSON Schema lets an object carry any property it does not declare unless
``additionalProperties`` says otherwise; enforced literally, that lets a model wander into invented
keys (``"role": "admin", "type": "string", ...``) until it runs out of tokens. So an object schema
that declares ``properties`` (or ``patternProperties``) and states neither ``additionalProperties``
nor ``unevaluatedProperties`` is compiled as if it said ``"additionalProperties": false``.

- A schema that states ``additionalProperties`` (``true``, ``false`` or a schema) keeps its rule;
  strict schemas (already ``false`` everywhere) are unchanged.
- A bare ``{"type": "object"}`` (no ``properties``) still means any object.
- Names listed in ``required`` but not in ``properties`` stay allowed.
- ``allOf`` branches are parts of one object: the allowed names are the union of their
  ``properties`` (with ``anyOf`` / ``oneOf`` too when the object declares properties of its own).
  An object composed from a ``$ref`` branch is left open.

An integer schema without ``minimum`` / ``maximum`` (or their exclusive forms) gets I-JSON's
interoperable range (RFC 7493: ±(2**53 - 1), which JavaScript and every float64 reader keep
exactly), as llama.cpp bounds an integer to 16 digits: unbounded, a small model sampling digits
may never stop (``3000000…`` until ``max_tokens``).
"""

from __future__ import annotations

from typing import Any

# Keywords whose value is a map of names to subschemas, one subschema, or a list of subschemas.
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_VALUES = (
    "items", "additionalItems", "unevaluatedItems", "additionalProperties", "contains",
    "propertyNames", "not", "if", "then", "else",
)
_SCHEMA_LISTS = ("prefixItems",)
_BRANCHES = ("allOf", "anyOf", "oneOf")
_OPEN_KEYWORDS = ("additionalProperties", "unevaluatedProperties")
_SAFE_INTEGER = 2**53 - 1  # I-JSON's bound (RFC 7493 section 2.2)


def grammar_schema(schema: Any) -> Any:
    """A copy of ``schema`` in which object schemas refuse properties they do not declare and
    integers without bounds get I-JSON's."""
    return _close(schema, part=False)


def _bound_integer(node: dict[str, Any]) -> None:
    kind = node.get("type")
    if kind != "integer" and not (isinstance(kind, list) and kind == ["integer"]):
        return
    if "minimum" not in node and "exclusiveMinimum" not in node:
        node["minimum"] = -_SAFE_INTEGER
    if "maximum" not in node and "exclusiveMaximum" not in node:
        node["maximum"] = _SAFE_INTEGER


def _declares(node: dict[str, Any]) -> bool:
    return "properties" in node or "patternProperties" in node


def _close(node: Any, part: bool) -> Any:
    """``part``: ``node`` is a branch of a composed object, which is closed as a whole instead."""
    if not isinstance(node, dict):
        return node
    out = dict(node)
    _bound_integer(out)
    for key in _SCHEMA_MAPS:
        if isinstance(node.get(key), dict):
            out[key] = {name: _close(sub, False) for name, sub in node[key].items()}
    for key in _SCHEMA_VALUES:
        value = node.get(key)
        if isinstance(value, dict):
            out[key] = _close(value, False)
        elif isinstance(value, list):  # draft-4 tuple ``items``
            out[key] = [_close(sub, False) for sub in value]
    for key in _SCHEMA_LISTS:
        if isinstance(node.get(key), list):
            out[key] = [_close(sub, False) for sub in node[key]]
    declares = _declares(node)
    parts: list[Any] = []
    for key in _BRANCHES:
        branches = node.get(key)
        if not isinstance(branches, list):
            continue
        is_part = key == "allOf" or declares
        out[key] = [_close(sub, is_part) for sub in branches]
        if is_part:
            parts.extend(branches)
    if part or any(key in node for key in _OPEN_KEYWORDS):
        return out
    if not declares and not any(isinstance(p, dict) and _declares(p) for p in parts):
        return out
    names = _property_names(node, parts)
    if names is None:
        return out
    properties = dict(out.get("properties") or {})
    for name in names:
        properties.setdefault(name, {})
    if properties or "properties" in node:
        out["properties"] = properties
    out["additionalProperties"] = False
    return out


def _property_names(node: dict[str, Any], parts: list[Any]) -> list[str] | None:
    """Every name the object allows, or None when a part may allow names not listed here."""
    names: list[str] = []
    for source in [node, *parts]:
        if not isinstance(source, dict):
            if source is False:
                continue
            return None  # ``true`` allows anything
        if source is not node:
            if "$ref" in source or "patternProperties" in source:
                return None
            if any(source.get(key) not in (None, False) for key in _OPEN_KEYWORDS):
                return None
        props = source.get("properties")
        for name in props if isinstance(props, dict) else ():
            names.append(name)
        required = source.get("required")
        for name in required if isinstance(required, list) else ():
            if isinstance(name, str):
                names.append(name)
    return list(dict.fromkeys(names))
