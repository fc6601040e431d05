"""Every way a request can ask for structured output, turned into one llguidance grammar.

Telnyx / vLLM-legacy ``guided_json`` / ``guided_regex`` / ``guided_choice`` / ``guided_grammar``,
vLLM's ``structured_outputs`` and OpenAI's ``response_format``. At most one per request; each
problem is a 400 naming the parameter (``Unsupported``), never a silently ignored constraint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import llguidance
from llguidance.gbnf_to_lark import any_to_lark

from switchboard.errors import Unsupported
from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.serving.json_schema import grammar_schema

# Compact JSON (no free whitespace): small models otherwise loop on spaces and newlines.
JSON_OPTIONS: llguidance.JsonCompileOptions = {
    "item_separator": ", ",
    "key_separator": ": ",
    "whitespace_flexible": False,
}


@dataclass(frozen=True)
class GrammarRequest:
    param: str  # the request field it came from, for error messages
    grammar: str  # llguidance grammar string


def requested_grammar(req: ChatCompletionRequest) -> GrammarRequest | None:
    found = requested_constraints(req)
    if not found:
        return None
    if len(found) > 1:
        names = ", ".join(param for param, _, _ in found)
        raise Unsupported(found[1][0], f"only one output constraint per request; got {names}")
    param, kind, value = found[0]
    return GrammarRequest(param, _compile(param, kind, value))


def requested_constraints(req: ChatCompletionRequest) -> list[tuple[str, str, Any]]:
    found: list[tuple[str, str, Any]] = []
    if req.guided_json is not None:
        found.append(("guided_json", "json", req.guided_json))
    if req.guided_regex is not None:
        found.append(("guided_regex", "regex", req.guided_regex))
    if req.guided_choice is not None:
        found.append(("guided_choice", "choice", req.guided_choice))
    if req.guided_grammar is not None:
        found.append(("guided_grammar", "grammar", req.guided_grammar))
    so = req.structured_outputs
    if so is not None:
        for kind, value in (
            ("json", so.json_), ("regex", so.regex), ("choice", so.choice), ("grammar", so.grammar)
        ):
            if value is not None:
                found.append((f"structured_outputs.{kind}", kind, value))
    rf = req.response_format
    if rf is not None and rf.type == "json_object":
        found.append(("response_format", "json", {"type": "object"}))
    elif rf is not None and rf.type == "json_schema":
        if rf.json_schema is None or rf.json_schema.schema_ is None:
            raise Unsupported(
                "response_format", "response_format of type json_schema needs json_schema.schema"
            )
        found.append(("response_format", "json", rf.json_schema.schema_))
    return found


def _compile(param: str, kind: str, value: Any) -> str:
    try:
        if kind == "json":
            schema = json.loads(value) if isinstance(value, str) else value
            if not isinstance(schema, dict):
                raise ValueError("a JSON Schema must be an object")
            # Undeclared properties are refused unless the schema allows them (see json_schema).
            return llguidance.LLMatcher.grammar_from_json_schema(
                grammar_schema(schema), defaults=JSON_OPTIONS
            )
        if kind == "regex":  # \d, \w, \s mean ASCII, as in Python and JavaScript
            lark = "start: /" + llguidance.regex_to_lark(value, "dws") + "/"
            return llguidance.LLMatcher.grammar_from_lark(lark)
        if kind == "choice":
            if not value or not all(isinstance(c, str) and c for c in value):
                raise ValueError("choices must be a non-empty list of non-empty strings")
            lark = "start: " + " | ".join(json.dumps(c) for c in value)
            return llguidance.LLMatcher.grammar_from_lark(lark)
        return llguidance.LLMatcher.grammar_from_lark(any_to_lark(value))
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise Unsupported(param, f"invalid {param}: {exc}") from exc
    except Exception as exc:
        raise Unsupported(param, f"invalid {param}: {exc}") from exc
