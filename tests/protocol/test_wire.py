"""The canonical request's wire form (``ChatCompletionRequest.wire``): what an OpenAI-compatible
upstream is sent, so it must be the client's JSON, unknown fields included at every level, with
no default the client did not send; and it must follow every change to the request."""

from __future__ import annotations

from typing import Any

from switchboard.protocol.chat import ChatCompletionRequest

BODY: dict[str, Any] = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "s", "cache_control": {"type": "ephemeral"}},
        {"role": "user", "content": [
            {"type": "text", "text": "hi", "vendor_part_field": 1},
            {"type": "image_url", "image_url": {"url": "data:x", "detail": "low", "zz": 2}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"},
             "vendor_call_field": 3}]},
        {"role": "tool", "tool_call_id": "c", "content": "r"},
    ],
    "temperature": 0.5,
    "tools": [{"type": "function", "function": {
        "name": "f", "strict": True,
        "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}],
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object"}, "strict": True, "vendor": "y"}},
    "structured_outputs": {"json": {"type": "object"}},
    "some_vendor_extension": {"a": [1, 2]},
    "stream_options": {"include_usage": True},
    "logit_bias": {"5": 1.0},
    "stop": ["a"],
    "n": 2,
}


def test_the_wire_form_is_the_clients_json() -> None:
    assert ChatCompletionRequest.model_validate(BODY).wire() == BODY


def test_the_wire_form_follows_copies_and_assignments() -> None:
    request = ChatCompletionRequest.model_validate(BODY)
    assert request.wire()["model"] == "m"
    copy = request.model_copy(update={"model": "other"})
    assert copy.wire()["model"] == "other" and request.wire()["model"] == "m"
    request.temperature = 0.1
    assert request.wire()["temperature"] == 0.1
    changed = request.wire()
    changed["model"] = "mutated by a caller"
    assert request.wire()["model"] == "m"  # each caller gets its own top-level dict
