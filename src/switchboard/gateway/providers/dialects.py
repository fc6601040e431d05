"""How each kind of OpenAI-compatible upstream spells structured output, and the translation of
a request's constraint (whatever name the client used) into that spelling.

- ``openai``: ``response_format`` only (JSON object / JSON Schema); regex, choice and grammar
  cannot be enforced there, so they are refused with a 400 rather than silently dropped.
- ``vllm``: ``structured_outputs`` ``{json | regex | choice | grammar}`` (vLLM ≥ 0.12).
- ``guided``: ``guided_json`` / ``guided_regex`` / ``guided_choice`` / ``guided_grammar``
  (Telnyx, vLLM before 0.12).
- ``llama.cpp``: ``response_format`` or a top-level ``json_schema``; its grammars are GBNF, so
  regex, choice and (Lark) grammar constraints are refused.
"""

from __future__ import annotations

from typing import Any

from switchboard.errors import Unsupported
from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.serving.constraints import requested_constraints

CONSTRAINT_FIELDS = (
    "guided_json", "guided_regex", "guided_choice", "guided_grammar", "structured_outputs",
    "response_format",
)
_GUIDED = {"json": "guided_json", "regex": "guided_regex", "choice": "guided_choice",
           "grammar": "guided_grammar"}


def translate_constraint(
    body: dict[str, Any], request: ChatCompletionRequest, dialect: str
) -> None:
    """Rewrite ``body`` (a copy of the client's JSON) in place for the upstream's dialect."""
    found = requested_constraints(request)
    if not found:
        return
    if len(found) > 1:
        names = ", ".join(param for param, _, _ in found)
        raise Unsupported(found[1][0], f"only one output constraint per request; got {names}")
    param, kind, value = found[0]
    response_format = body.get("response_format")
    for name in CONSTRAINT_FIELDS:
        body.pop(name, None)
    if param == "response_format" and dialect in ("openai", "llama.cpp", "vllm"):
        body["response_format"] = response_format  # their native spelling: unchanged
        return
    if dialect == "vllm":
        body["structured_outputs"] = {"json" if kind == "json" else kind: value}
    elif dialect == "guided":
        body[_GUIDED[kind]] = value
    elif kind == "json":  # openai, llama.cpp
        schema = value if isinstance(value, dict) else None
        if schema is None:
            raise Unsupported(param, f"{param} must be a JSON Schema object for this model")
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema, "strict": True},
        }
    else:
        raise Unsupported(
            param, f"{param} cannot be enforced by this model's provider ({dialect} API)"
        )
