"""Chat-completion chunks in, the Responses API's stream events out (``ResponseStream``).

The events and their fields are OpenAI's, each with ``type`` and ``sequence_number``:
``response.created`` and ``response.in_progress``; per output item ``response.output_item.added``,
for a message ``response.content_part.added``, ``response.output_text.delta``…,
``response.output_text.done`` and ``response.content_part.done``, for a function call
``response.function_call_arguments.delta``… and ``response.function_call_arguments.done``, then
``response.output_item.done``; last ``response.completed`` (``response.incomplete`` when cut by
``max_output_tokens``), or on a failure an ``error`` event and ``response.failed``. The final
response (``ResponseStream.response``) is what the events add up to, to store.
"""

from __future__ import annotations

from typing import Any

from switchboard.protocol.chunk_stream import ChunkTranslator
from switchboard.protocol.responses_api import (
    FunctionCallOutput,
    OutputMessage,
    OutputTextPart,
    ResponseError,
    ResponseObject,
    new_id,
)
from switchboard.protocol.responses_translation import INCOMPLETE, finished

Event = dict[str, Any]


class ResponseStream(ChunkTranslator[Event]):
    """``start``, then ``feed`` each chunk, then ``end`` (or ``fail``); each returns events."""

    def __init__(self, shell: ResponseObject) -> None:
        super().__init__()
        self.response = shell  # the finished response once ``end`` or ``fail`` ran
        self._sequence = 0
        self._started = False
        self._output: list[OutputMessage | FunctionCallOutput] = []
        self._open: OutputMessage | FunctionCallOutput | None = None
        self._calls: dict[int, FunctionCallOutput] = {}  # chat tool-call index -> its item

    def _event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def _snapshot(self) -> dict[str, Any]:
        return self.response.model_dump(mode="json")

    def start(self) -> list[Event]:
        if self._started:
            return []
        self._started = True
        return [self._event("response.created", response=self._snapshot()),
                self._event("response.in_progress", response=self._snapshot())]

    def _opening(self, chunk: dict[str, Any]) -> list[Event]:
        return self.start()

    def end(self) -> list[Event]:
        """The last item closed and ``response.completed`` (or ``response.incomplete``)."""
        events = self.start()
        cut = self._finish in INCOMPLETE
        events += self._close(incomplete=cut)
        self.response = finished(self.response, self._finish, self._usage, self._metrics)
        self.response.output = list(self._output)
        kind = "response.incomplete" if cut else "response.completed"
        return events + [self._event(kind, response=self._snapshot())]

    def fail(self, code: str, message: str, param: str | None = None) -> list[Event]:
        """An ``error`` event and ``response.failed`` (the output so far, unfinished)."""
        events = self.start()
        self.response = self.response.model_copy(update={
            "status": "failed", "output": list(self._output),
            "error": ResponseError(code=code, message=message)})
        return events + [self._event("error", code=code, message=message, param=param),
                         self._event("response.failed", response=self._snapshot())]

    def _add(self, item: OutputMessage | FunctionCallOutput) -> list[Event]:
        events = self._close(incomplete=False)
        self._output.append(item)
        self._open = item
        events.append(self._event("response.output_item.added",
                                  output_index=len(self._output) - 1,
                                  item=item.model_dump(mode="json")))
        return events

    def _close(self, incomplete: bool) -> list[Event]:
        item, self._open = self._open, None
        if item is None:
            return []
        index = self._output.index(item)
        item.status = "incomplete" if incomplete else "completed"
        events: list[Event] = []
        if isinstance(item, OutputMessage):
            part = item.content[0]
            events.append(self._event("response.output_text.done", item_id=item.id,
                                      output_index=index, content_index=0, text=part.text,
                                      logprobs=[]))
            events.append(self._event("response.content_part.done", item_id=item.id,
                                      output_index=index, content_index=0,
                                      part=part.model_dump(mode="json")))
        else:
            events.append(self._event("response.function_call_arguments.done", item_id=item.id,
                                      output_index=index, name=item.name,
                                      arguments=item.arguments))
        events.append(self._event("response.output_item.done", output_index=index,
                                  item=item.model_dump(mode="json")))
        return events

    def _text(self, text: str) -> list[Event]:
        events: list[Event] = []
        item = self._open
        if not isinstance(item, OutputMessage):
            item = OutputMessage(id=new_id("msg"), status="in_progress", content=[])
            events += self._add(item)
            part = OutputTextPart(text="")
            events.append(self._event("response.content_part.added", item_id=item.id,
                                      output_index=len(self._output) - 1, content_index=0,
                                      part=part.model_dump(mode="json")))
            item.content.append(part)
        item.content[0].text += text
        events.append(self._event("response.output_text.delta", item_id=item.id,
                                  output_index=len(self._output) - 1, content_index=0,
                                  delta=text, logprobs=[]))
        return events

    def _tool_call(self, call: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        fn = call.get("function") or {}
        position = int(call.get("index") or 0)
        item = self._calls.get(position)
        if item is None:
            item = FunctionCallOutput(id=new_id("fc"), status="in_progress",
                                      call_id=str(call.get("id") or new_id("call")),
                                      name=fn.get("name") or "", arguments="")
            self._calls[position] = item
            events += self._add(item)
        arguments = fn.get("arguments") or ""
        if arguments:
            item.arguments += arguments
            if item is self._open:  # a late delta of an earlier call: in the final item only
                events.append(self._event("response.function_call_arguments.delta",
                                          item_id=item.id,
                                          output_index=self._output.index(item),
                                          delta=arguments))
        return events
