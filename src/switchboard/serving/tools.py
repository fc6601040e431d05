"""Function tools on local models: the call format, the prompt and the enforcing grammar.

The call format follows the model's chat template (``call_format``):

- a template that reads ``tools`` and writes ``<tool_call>`` (Qwen 2.5, Hermes) lists the tools
  itself; calls are ``<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>``, one a line;
- a Llama 3.1+ template (tools in the first user message) takes one call,
  ``{"name": ..., "parameters": {...}}``;
- any other template (SmolLM2's knows no tools) gets Switchboard's own format: the tool list in
  the system message and calls as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``.

Native templates also get earlier calls as ``tool_calls`` (arguments as objects) and ``tool``
messages; the fallback writes earlier calls into the assistant's text. The grammar enforces the
format and each function's parameter schema (undeclared properties refused, see
``json_schema``): ``required`` and a named function force calls, ``auto`` lets the model choose
text (which cannot start like a call) or calls, ``parallel_tool_calls: false`` allows one call.
Reading calls back out of the output is ``tool_parser``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import llguidance

from switchboard.engine.template import ChatTemplate
from switchboard.errors import Unsupported
from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.protocol.messages import FunctionDefinition, FunctionTool, NamedToolChoice
from switchboard.serving.json_schema import grammar_schema
from switchboard.serving.params import template_messages

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_JSON_STYLE = {"item_separator": ", ", "key_separator": ": ", "whitespace_flexible": False}
# A function without ``parameters`` takes none (OpenAI): its arguments are ``{}``.
_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class CallFormat:
    """How a model writes one call: ``open + {"name": "N", "<args_key>": ARGS} + close``."""

    family: str
    open: str
    close: str
    args_key: str = "arguments"
    separator: str = ""  # between parallel calls
    parallel: bool = True  # the format holds several calls
    native: bool = False  # the model's own template renders tools, calls and results

    def head(self, name: str) -> str:
        """What precedes a call's arguments (the grammar writes it exactly like this)."""
        return f'{self.open}{{"name": "{name}", "{self.args_key}": '

    @property
    def tail(self) -> str:
        return "}" + self.close


SWITCHBOARD_FORMAT = CallFormat("switchboard", OPEN, CLOSE)
HERMES_FORMAT = CallFormat("hermes", OPEN + "\n", "\n" + CLOSE, separator="\n", native=True)
LLAMA3_FORMAT = CallFormat("llama3", "", "", args_key="parameters", parallel=False, native=True)


def call_format(template: ChatTemplate) -> CallFormat:
    """The format the model's template teaches; Switchboard's own when it knows no tools or
    teaches a format not listed here (then the template is rendered without ``tools``)."""
    if not template.knows_tools:
        return SWITCHBOARD_FORMAT
    if OPEN in template.source:
        return HERMES_FORMAT
    if "<|start_header_id|>" in template.source and '"parameters"' in template.source:
        return LLAMA3_FORMAT
    return SWITCHBOARD_FORMAT


@dataclass(frozen=True)
class ToolPlan:
    functions: list[FunctionDefinition]  # the ones the model may call
    grammar: str
    format: CallFormat = SWITCHBOARD_FORMAT

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.functions]


def plan_tools(
    req: ChatCompletionRequest, fmt: CallFormat = SWITCHBOARD_FORMAT
) -> ToolPlan | None:
    """The functions offered and the grammar enforcing ``tool_choice``; None without tools."""
    tools = req.tools or []
    for tool in tools:
        if not isinstance(tool, FunctionTool):
            raise Unsupported("tools", f"tools of type '{tool.type}' are not available yet")
    functions = [t.function for t in tools if isinstance(t, FunctionTool)]
    choice = req.tool_choice
    if not functions:
        if choice not in (None, "none"):
            raise Unsupported("tool_choice", "tool_choice needs tools")
        return None
    if choice == "none":
        return None
    names = [f.name for f in functions]
    if isinstance(choice, NamedToolChoice | dict):
        named = choice.function.name if isinstance(choice, NamedToolChoice) else None
        if named is None:
            raise Unsupported("tool_choice", "tool_choice must be none, auto, required or "
                              '{"type": "function", "function": {"name": ...}}')
        if named not in names:
            raise Unsupported("tool_choice", f"tool_choice names '{named}', which is not in tools")
        functions = [f for f in functions if f.name == named]
    parallel = req.parallel_tool_calls is not False and not isinstance(choice, NamedToolChoice) \
        and fmt.parallel
    rules = [f'call: {" | ".join(f"call_{i}" for i in range(len(functions)))}']
    for i, f in enumerate(functions):
        schema = grammar_schema(f.parameters if f.parameters is not None else _NO_PARAMETERS)
        schema["x-guidance"] = _JSON_STYLE
        rules.append(f"call_{i}: {json.dumps(fmt.head(f.name))} args_{i} {json.dumps(fmt.tail)}")
        rules.append(f"args_{i}: %json {json.dumps(schema)}")
    if not parallel:
        calls = "call"
    elif fmt.separator:
        calls = f"call ({json.dumps(fmt.separator)} call)*"
    else:
        calls = "call+"
    text = f"/[^{fmt.head('')[0]}][\\s\\S]*/"  # "<" or "{": text cannot start like a call
    start = f"start: {calls}" if choice in ("required",) or isinstance(choice, NamedToolChoice) \
        else f"start: {calls} | text\ntext: {text}"
    lark = "\n".join([start, *rules])
    try:
        grammar = llguidance.LLMatcher.grammar_from_lark(lark)
    except ValueError as exc:
        raise Unsupported("tools", f"the tools' parameters cannot be enforced: {exc}") from exc
    return ToolPlan(functions, grammar, fmt)


def tools_system_prompt(functions: list[FunctionDefinition]) -> str:
    listing = "\n".join(
        json.dumps(
            {"name": f.name, "description": f.description or "", "parameters": f.parameters or {}},
            ensure_ascii=False,
        )
        for f in functions
    )
    return (
        "You can call these functions:\n" + listing + "\n"
        "To call one, answer only with " + OPEN + '{"name": "NAME", "arguments": {...}}' + CLOSE
        + " (one block per call); otherwise answer normally."
    )


def with_tools_in_system(
    messages: list[dict[str, Any]], functions: list[FunctionDefinition]
) -> None:
    """Put the tool list into the system message (added first when there is none)."""
    with_system_section(messages, tools_system_prompt(functions))


def with_system_section(messages: list[dict[str, Any]], section: str) -> None:
    """Append ``section`` to the system message (added first when there is none)."""
    if messages and messages[0]["role"] == "system":
        messages[0]["content"] = f'{messages[0]["content"]}\n\n{section}'
    else:
        messages.insert(0, {"role": "system", "content": section})


def render_call(name: str, arguments: str) -> str:
    """An assistant's earlier call, as the model is taught to write it (Switchboard's format)."""
    args = _arguments_object(arguments)
    return OPEN + json.dumps({"name": name, "arguments": args}, ensure_ascii=False) + CLOSE


def call_id() -> str:
    return "call_" + secrets.token_hex(12)


def render_prompt(
    req: ChatCompletionRequest, template: ChatTemplate, plan: ToolPlan | None
) -> str:
    """The prompt for ``req``: tools and earlier calls in the format ``plan`` enforces (or, for
    ``tool_choice: none``, the one the template teaches)."""
    fmt = plan.format if plan is not None else call_format(template)
    if not fmt.native:
        messages = template_messages(req, render_call if req.tools else None)
        if plan is not None:
            with_tools_in_system(messages, plan.functions)
        with_response_schema(messages, req)
        return template.render(messages, add_generation_prompt=True)
    messages = template_messages(req)
    with_response_schema(messages, req)
    for message in messages:
        for call in message.get("tool_calls") or []:
            call["function"]["arguments"] = _arguments_object(call["function"]["arguments"])
    tools = None
    if plan is not None:
        tools = [t.model_dump(exclude_none=True) for t in req.tools or []
                 if isinstance(t, FunctionTool)]
    return template.render(messages, add_generation_prompt=True, tools=tools)


def with_response_schema(messages: list[dict[str, Any]], req: ChatCompletionRequest) -> None:
    """Tell the model the ``response_format`` JSON Schema its output is held to, as it is told
    of tools: shown none, a small model writes prose into the first string the grammar opens
    and runs into ``max_tokens``. (The vLLM-style ``guided_json`` keeps the prompt as sent.)"""
    rf = req.response_format
    if rf is None or rf.type != "json_schema" or rf.json_schema is None \
            or rf.json_schema.schema_ is None:
        return
    schema = json.dumps(rf.json_schema.schema_, ensure_ascii=False)
    with_system_section(messages, f"Answer with JSON that follows this JSON Schema:\n{schema}")


def _arguments_object(arguments: str) -> Any:
    """A call's JSON-encoded arguments as the object templates expect (``tool_call.arguments |
    tojson``); text that is not JSON stays text."""
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments
