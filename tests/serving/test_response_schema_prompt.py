"""A ``response_format`` JSON Schema is shown to the model, as tools are (``tools.render_prompt``).

Held to a schema it was never shown, the shipped SmolLM2 wrote prose into the first string the
grammar opened until ``max_tokens`` (LangChain's ``with_structured_output(method="json_schema")``
failed on 2 of 3 seeds with ``LengthFinishReasonError``); ``tests/http/test_agent_frameworks.py``
holds it over 20 seeds against a server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from switchboard.engine import ChatTemplate
from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.serving.tools import plan_tools, render_prompt

DATA = Path(__file__).parent.parent / "data"
QWEN = ChatTemplate((DATA / "qwen2_5_chat_template.jinja").read_text(), "", "<|im_end|>")
CITY = {"type": "object", "properties": {"name": {"type": "string"},
                                         "population": {"type": "integer"}},
        "required": ["name", "population"]}
ASK = [{"role": "user", "content": "Tell me about Paris."}]


def request(messages: list[dict[str, Any]], **fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": messages, **fields})


def json_schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "City", "schema": schema}}


def test_the_schema_is_in_the_system_message(reference: dict) -> None:
    smollm2 = ChatTemplate(reference["chat_template"])
    prompt = render_prompt(request(ASK, response_format=json_schema_format(CITY)), smollm2, None)
    system, user = prompt.split("<|im_start|>user", 1)
    assert json.dumps(CITY) in system and "Tell me about Paris." in user


def test_it_joins_a_system_message_the_client_sent(reference: dict) -> None:
    smollm2 = ChatTemplate(reference["chat_template"])
    messages = [{"role": "system", "content": "Be brief."}, *ASK]
    prompt = render_prompt(request(messages, response_format=json_schema_format(CITY)),
                           smollm2, None)
    assert prompt.count("<|im_start|>system") == 1
    assert prompt.index("Be brief.") < prompt.index(json.dumps(CITY))


def test_a_template_that_knows_tools_gets_both() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": CITY}}]
    req = request(ASK, tools=tools, response_format=json_schema_format(CITY))
    prompt = render_prompt(req, QWEN, plan_tools(req))
    assert '"name": "f"' in prompt and "JSON Schema:\n" + json.dumps(CITY) in prompt


def test_other_constraints_keep_the_prompt_as_sent(reference: dict) -> None:
    smollm2 = ChatTemplate(reference["chat_template"])
    plain = render_prompt(request(ASK), smollm2, None)
    for fields in ({"guided_json": CITY}, {"response_format": {"type": "json_object"}}):
        assert render_prompt(request(ASK, **fields), smollm2, None) == plain
