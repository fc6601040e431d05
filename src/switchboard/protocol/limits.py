"""How much one request may hold: item counts and sizes, checked before the items are validated.

Each refusal is a pydantic error of its own type (``too_many_messages``, ``too_many_choices``…,
listed in ``LIMIT_CODES``); the HTTP layer answers it with a 400 whose ``code`` is that type and
whose ``param`` names the field. The sizes of whole bodies, their nesting and their integers are
the HTTP layer's (``switchboard.http.body_limits``).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

MAX_MESSAGES = 2048  # messages in one request (OpenAI's own bound)
MAX_CONTENT_PARTS = 256  # content parts in one message
MAX_TOOLS = 128  # tools (or deprecated functions) in one request (OpenAI's own bound)
MAX_CHOICES = 1000  # strings of guided_choice / structured_outputs.choice
MAX_SCHEMA_CHARS = 100_000  # a JSON Schema (guided_json, response_format…), serialized
MAX_PROMPTS = 128  # prompts of one /v1/completions request

LIMIT_CODES = frozenset({
    "too_many_messages", "too_many_content_parts", "too_many_tools", "too_many_choices",
    "schema_too_large", "too_many_prompts",
})


def at_most(limit: int, code: str, what: str) -> BeforeValidator:
    """A list of at most ``limit`` items, refused (as ``code``) before its items are validated."""

    def check(value: Any) -> Any:
        if isinstance(value, list) and len(value) > limit:
            raise PydanticCustomError(code, f"at most {limit} {what} are allowed; got "
                                            f"{len(value)}")
        return value

    return BeforeValidator(check)


def schema_size(value: Any) -> Any:
    """A JSON Schema (an object, or its text) of at most ``MAX_SCHEMA_CHARS`` characters."""
    size = len(value) if isinstance(value, str) else (
        len(json.dumps(value, default=str)) if isinstance(value, dict | list) else 0)
    if size > MAX_SCHEMA_CHARS:
        raise PydanticCustomError("schema_too_large", f"the schema has {size} characters; at "
                                                      f"most {MAX_SCHEMA_CHARS} are allowed")
    return value


SCHEMA_SIZE = BeforeValidator(schema_size)
