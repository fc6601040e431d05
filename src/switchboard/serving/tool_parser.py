"""Reading function calls back out of a model's output, streamed or whole, with one parser.

``ToolCallParser`` is fed the output piece by piece (a whole output is one piece). It tracks
JSON strings, escapes and nesting, so a call's arguments end where their JSON value ends — text
such as ``}</tool_call>`` inside a string is part of the arguments, never the end of the call.
Each ``feed`` returns the content delta and OpenAI's tool-call deltas (one entry per call index;
a call's first carries its id, type and name); ``finish`` settles ``finish_reason``. The
non-streamed reply is what the deltas add up to: a call cut by ``max_tokens`` comes back with the
arguments generated so far and ``finish_reason: "length"`` either way, and the format's markup
never reaches the client.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from switchboard.serving.tools import CallFormat, call_id

_NAME = re.compile(r"[A-Za-z0-9_-]*")


class MalformedToolCall(ValueError):
    """The output left the call format the grammar enforces (a server-side fault)."""


@dataclass
class ParsedCall:
    id: str
    name: str
    arguments: str = ""
    complete: bool = False  # its arguments are a whole JSON value

    def wire(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


class _ValueEnd:
    """Finds where one JSON value ends in text arriving piece by piece."""

    def __init__(self) -> None:
        self.depth = 0
        self.started = False
        self.scalar = False  # a number, true, false or null: ends at the next delimiter
        self.in_string = False
        self.escaped = False
        self.done = False

    def scan(self, text: str) -> int:
        """How many leading characters of ``text`` belong to the value (``done`` when it ended)."""
        for i, c in enumerate(text):
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif c == "\\":
                    self.escaped = True
                elif c == '"':
                    self.in_string = False
                    if self.depth == 0:
                        self.done = True
                        return i + 1
            elif self.scalar:
                if c in ",}] \t\r\n":
                    self.done = True
                    return i
            elif not self.started:
                if c in " \t\r\n":
                    continue
                self.started = True
                if c in "{[":
                    self.depth = 1
                elif c == '"':
                    self.in_string = True
                else:
                    self.scalar = True
            elif c == '"':
                self.in_string = True
            elif c in "{[":
                self.depth += 1
            elif c in "}]":
                self.depth -= 1
                if self.depth == 0:
                    self.done = True
                    return i + 1
        return len(text)


def _literal(text: str, literal: str) -> int | None:
    """``len(literal)`` if ``text`` starts with it, 0 if ``text`` may still become it, else
    None (a mismatch)."""
    if text.startswith(literal):
        return len(literal)
    return 0 if literal.startswith(text) else None


class ToolCallParser:
    """One choice's output as content or tool calls in ``fmt``, for functions named ``names``."""

    def __init__(self, fmt: CallFormat, names: Iterable[str]) -> None:
        self.fmt = fmt
        self.names = set(names)
        self.mode = "undecided"  # "content" | "calls"
        self.content = ""
        self.calls: list[ParsedCall] = []
        self._pending = ""  # output not parsed yet (calls mode)
        self._state = "head"  # "head" | "arguments" | "tail"
        self._value = _ValueEnd()

    def feed(self, delta: str) -> tuple[str, list[dict[str, Any]]]:
        """Return (content delta, tool-call deltas) for this piece of output."""
        if self.mode == "undecided" and delta:
            self.mode = "calls" if delta.startswith(self.fmt.head("")[0]) else "content"
        if self.mode == "content":
            self.content += delta
            return delta, []
        self._pending += delta
        deltas: dict[int, dict[str, Any]] = {}
        while self._step(deltas):
            pass
        return "", [deltas[i] for i in sorted(deltas)]

    def finish(self, reason: str | None) -> str:
        """``finish_reason`` for the whole output, given the engine's; a call cut short keeps its
        arguments so far (``length`` stays ``length``)."""
        reason = reason or "stop"
        if self.mode != "calls" or reason == "length":
            return reason
        if self.calls and all(call.complete for call in self.calls):
            return "tool_calls"
        return reason

    def tool_calls(self) -> list[dict[str, Any]]:
        """``message.tool_calls`` of the output so far (empty for plain text)."""
        return [call.wire() for call in self.calls]

    def _step(self, deltas: dict[int, dict[str, Any]]) -> bool:
        """Parse what ``_pending`` allows; True to go on."""
        fmt = self.fmt
        if self._state == "head":
            text = self._pending.lstrip(" \t\r\n")
            if not text:
                return False
            if self.calls and not fmt.parallel:
                raise MalformedToolCall(f"text after the only call: {text[:40]!r}")
            prefix = fmt.head("").removesuffix(f'", "{fmt.args_key}": ')
            matched = _literal(text, prefix)
            if not matched:
                return self._fail_unless_partial(matched, text)
            name = _NAME.match(text, matched)
            assert name is not None  # the pattern matches the empty string
            rest = text[name.end():]
            ended = _literal(rest, f'", "{fmt.args_key}": ')
            if not ended:
                return self._fail_unless_partial(ended, text)
            if name.group() not in self.names:
                raise MalformedToolCall(f"a call to an unknown function {name.group()!r}")
            call = ParsedCall(call_id(), name.group())
            self.calls.append(call)
            deltas[len(self.calls) - 1] = {
                "index": len(self.calls) - 1, "id": call.id, "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            self._pending = rest[ended:]
            self._state, self._value = "arguments", _ValueEnd()
            return True
        if self._state == "arguments":
            taken = self._value.scan(self._pending)
            piece, self._pending = self._pending[:taken], self._pending[taken:]
            call, index = self.calls[-1], len(self.calls) - 1
            call.arguments += piece
            if piece:
                entry = deltas.setdefault(index, {"index": index, "function": {"arguments": ""}})
                entry["function"]["arguments"] += piece
            if not self._value.done:
                return False
            try:
                json.loads(call.arguments)
            except json.JSONDecodeError as exc:
                raise MalformedToolCall(f"the arguments of {call.name!r} are not JSON: {exc}") \
                    from exc
            call.complete = True
            self._state = "tail"
            return True
        matched = _literal(self._pending, fmt.tail)
        if not matched:
            return self._fail_unless_partial(matched, self._pending)
        self._pending = self._pending[matched:]
        self._state = "head"
        return True

    @staticmethod
    def _fail_unless_partial(matched: int | None, text: str) -> bool:
        if matched is None:
            raise MalformedToolCall(f"the output is not a call in the enforced format: "
                                    f"{text[:60]!r}")
        return False  # wait for more output
