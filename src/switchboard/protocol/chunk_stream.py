"""``ChunkTranslator``: what every dialect's stream translator does with chat-completion chunks
(the first choice's): keep the usage, metrics and finish reason, and hand each text delta and
tool-call delta to the dialect, which answers with its own events. The Anthropic Messages and
Responses streams build on it."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

E = TypeVar("E")


class ChunkTranslator(Generic[E]):
    """Subclasses give ``_opening`` (the events a stream starts with, once), ``_text`` and
    ``_tool_call``; ``feed`` each chunk, then end the stream in the dialect's way."""

    def __init__(self) -> None:
        self._finish: str | None = None
        self._usage: dict[str, Any] = {}
        self._metrics: dict[str, Any] | None = None

    def feed(self, chunk: dict[str, Any]) -> list[E]:
        events = self._opening(chunk)
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        if chunk.get("metrics"):
            self._metrics = chunk["metrics"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                events += self._text(delta["content"])
            for call in delta.get("tool_calls") or ():
                events += self._tool_call(call)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return events

    def _opening(self, chunk: dict[str, Any]) -> list[E]:
        raise NotImplementedError

    def _text(self, text: str) -> list[E]:
        raise NotImplementedError

    def _tool_call(self, call: dict[str, Any]) -> list[E]:
        raise NotImplementedError
