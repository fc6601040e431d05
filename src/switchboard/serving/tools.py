"""Function tools on local models: prompt format, enforcing grammar, and parsing calls back out.

Models whose chat template knows no tools (SmolLM2's) get the tool list in the system message and
answer calls as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (the Hermes / Qwen
layout). The grammar enforces that layout and each function's parameter schema: ``required`` and a
named function force calls, ``auto`` lets the model choose text (which cannot start with ``<``) or
calls, ``parallel_tool_calls: false`` allows one call.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import llguidance

from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.protocol.messages import FunctionDefinition, FunctionTool, NamedToolChoice
from switchboard.serving.params import Unsupported

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)
_JSON_STYLE = {"item_separator": ", ", "key_separator": ": ", "whitespace_flexible": False}


@dataclass(frozen=True)
class ToolPlan:
    functions: list[FunctionDefinition]
    grammar: str


def plan_tools(req: ChatCompletionRequest) -> ToolPlan | None:
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
    parallel = req.parallel_tool_calls is not False and not isinstance(choice, NamedToolChoice)
    rules = [f'call: {" | ".join(f"call_{i}" for i in range(len(functions)))}']
    for i, f in enumerate(functions):
        schema = dict(f.parameters or {"type": "object"})
        schema["x-guidance"] = _JSON_STYLE
        head = json.dumps(f'{OPEN}{{"name": "{f.name}", "arguments": ')
        tail = json.dumps(f"}}{CLOSE}")
        rules.append(f"call_{i}: {head} args_{i} {tail}")
        rules.append(f"args_{i}: %json {json.dumps(schema)}")
    calls = "call+" if parallel else "call"
    start = f"start: {calls}" if choice in ("required",) or isinstance(choice, NamedToolChoice) \
        else f"start: {calls} | text\ntext: /[^<][\\s\\S]*/"
    lark = "\n".join([start, *rules])
    return ToolPlan(functions, llguidance.LLMatcher.grammar_from_lark(lark))


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
    section = tools_system_prompt(functions)
    if messages and messages[0]["role"] == "system":
        messages[0]["content"] = f'{messages[0]["content"]}\n\n{section}'
    else:
        messages.insert(0, {"role": "system", "content": section})


def render_call(name: str, arguments: str) -> str:
    """An assistant's earlier call, as the model is taught to write it."""
    try:
        args: Any = json.loads(arguments)
    except json.JSONDecodeError:
        args = arguments
    return OPEN + json.dumps({"name": name, "arguments": args}, ensure_ascii=False) + CLOSE


def call_id() -> str:
    return "call_" + secrets.token_hex(12)


def parse_calls(text: str) -> list[dict[str, Any]]:
    """``message.tool_calls`` from a finished output (empty if it is plain text)."""
    calls = []
    for body in _CALL.findall(text):
        data = json.loads(body)
        calls.append({
            "id": call_id(),
            "type": "function",
            "function": {
                "name": data["name"],
                "arguments": json.dumps(data["arguments"], ensure_ascii=False),
            },
        })
    return calls


@dataclass
class ToolCallStream:
    """Turns streamed output text into OpenAI's tool-call deltas (or plain content deltas)."""

    text: str = ""
    mode: str = "undecided"  # "content" | "calls"
    ids: list[str] = field(default_factory=list)
    sent_args: list[int] = field(default_factory=list)  # characters of arguments sent per call

    def feed(self, delta: str) -> tuple[str, list[dict[str, Any]]]:
        """Return (content delta, tool-call deltas) for this piece of output."""
        self.text += delta
        if self.mode == "undecided" and self.text:
            self.mode = "calls" if self.text.startswith("<") else "content"
        if self.mode == "content":
            return delta, []
        if self.mode == "undecided":
            return "", []
        return "", self._call_deltas()

    _HEAD = re.compile(r'<tool_call>\{"name": "([^"]*)", "arguments": ')

    def _call_deltas(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for index, match in enumerate(self._HEAD.finditer(self.text)):
            if index == len(self.ids):
                self.ids.append(call_id())
                self.sent_args.append(0)
                out.append({"index": index, "id": self.ids[index], "type": "function",
                            "function": {"name": match.group(1), "arguments": ""}})
            rest = self.text[match.end():]
            end = rest.find("}" + CLOSE)
            if end == -1:  # hold back what could still be the closing "}</tool_call>"
                end = len(rest)
                for k in range(min(len(CLOSE) + 1, len(rest)), 0, -1):
                    if ("}" + CLOSE).startswith(rest[-k:]):
                        end = len(rest) - k
                        break
            args = rest[:end]
            if len(args) > self.sent_args[index]:
                out.append({"index": index,
                            "function": {"arguments": args[self.sent_args[index]:]}})
                self.sent_args[index] = len(args)
        return out
