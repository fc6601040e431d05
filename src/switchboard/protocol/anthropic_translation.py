"""Anthropic's Messages API onto OpenAI's chat completions and back, for ``POST /v1/messages``.

The mirror image of :mod:`switchboard.gateway.providers.anthropic` (which sends OpenAI requests
to Anthropic upstreams). Request: ``system`` → a system message; ``tool_use`` blocks → the
assistant's ``tool_calls`` (``input`` as JSON arguments); ``tool_result`` blocks → ``tool``
messages; images → ``image_url`` parts (a data URL for base64), which the local model refuses;
``tools``, ``tool_choice`` (``any`` → ``required``), ``stop_sequences``, ``metadata.user_id``
→ their OpenAI forms. Answer: content and ``tool_calls`` → ``text`` and ``tool_use`` blocks,
finish reasons → stop reasons, usage → input and output tokens. A stream is translated chunk by
chunk (``MessageStream``).

Which stop sequence ended the output is not part of a chat completion; when the request asks for
``include_stop_str_in_output`` (``to_chat_body(..., keep_stop=True)``) the matched sequence ends
the text, where ``stop_of`` finds it, reports it and cuts it off.
"""

from __future__ import annotations

import json
from typing import Any

from switchboard.protocol.anthropic_messages import (
    ContentBlock,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    CountTokensRequest,
    ImageBlockParam,
    InputJSONDelta,
    Message,
    MessageDelta,
    MessageDeltaEvent,
    MessageDeltaUsage,
    MessagesRequest,
    MessageStartEvent,
    MessageStopEvent,
    MessageUsage,
    PingEvent,
    StopReason,
    StreamEvent,
    TextBlock,
    TextBlockParam,
    TextDelta,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceNone,
    ToolResultBlockParam,
    ToolUseBlock,
    ToolUseBlockParam,
)
from switchboard.protocol.chunk_stream import ChunkTranslator

STOP_REASONS: dict[str, StopReason] = {
    "stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
    "function_call": "tool_use", "content_filter": "refusal",
}


class UntranslatableRequest(ValueError):
    """A request that has no chat-completions form; ``param`` names the offending field."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def to_chat_body(req: MessagesRequest | CountTokensRequest, keep_stop: bool = False
                 ) -> dict[str, Any]:
    """The chat-completions body (a plain dict, to validate as ``ChatCompletionRequest``)."""
    messages: list[dict[str, Any]] = []
    if req.system:
        system = req.system if isinstance(req.system, str) else "".join(
            b.text for b in req.system)
        messages.append({"role": "system", "content": system})
    for number, turn in enumerate(req.messages):
        blocks = ([TextBlockParam(type="text", text=turn.content)]
                  if isinstance(turn.content, str) else turn.content)
        if turn.role == "assistant":
            messages.append(_assistant(blocks, number))
        else:
            messages.extend(_user(blocks, number))
    body: dict[str, Any] = {"model": req.model, "messages": messages}
    if req.tools:
        body["tools"] = [
            {"type": "function", "function": {
                "name": t.name, "parameters": t.input_schema,
                **({"description": t.description} if t.description else {})}}
            for t in req.tools
        ]
    if req.tool_choice is not None:
        body.update(_tool_choice(req.tool_choice))
    if isinstance(req, CountTokensRequest):
        return body
    body["max_tokens"] = req.max_tokens
    for name in ("temperature", "top_p", "top_k"):
        value = getattr(req, name)
        if value is not None:
            body[name] = value
    if req.stop_sequences:
        body["stop"] = list(req.stop_sequences)
        if keep_stop:
            body["include_stop_str_in_output"] = True
    if req.metadata is not None and req.metadata.user_id:
        body["user"] = req.metadata.user_id
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _assistant(blocks: list[Any], number: int) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in blocks:
        if isinstance(block, TextBlockParam):
            texts.append(block.text)
        elif isinstance(block, ToolUseBlockParam):
            calls.append({"id": block.id, "type": "function", "function": {
                "name": block.name, "arguments": json.dumps(block.input)}})
        else:
            raise UntranslatableRequest(
                f"messages[{number}].content",
                f"an assistant turn cannot hold {block.type} blocks")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _user(blocks: list[Any], number: int) -> list[dict[str, Any]]:
    """Tool results become ``tool`` messages, in order; the other blocks user messages."""
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in blocks:
        if isinstance(block, ToolResultBlockParam):
            if parts:
                out.append({"role": "user", "content": parts})
                parts = []
            out.append({"role": "tool", "tool_call_id": block.tool_use_id,
                        "content": _result_text(block, number)})
        elif isinstance(block, TextBlockParam):
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlockParam):
            parts.append(_image_part(block))
        else:
            raise UntranslatableRequest(f"messages[{number}].content",
                                        f"a user turn cannot hold {block.type} blocks")
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _result_text(block: ToolResultBlockParam, number: int) -> str:
    if block.content is None or isinstance(block.content, str):
        return block.content or ""
    if any(isinstance(part, ImageBlockParam) for part in block.content):
        raise UntranslatableRequest(f"messages[{number}].content",
                                    "images in tool results are not supported")
    return "".join(part.text for part in block.content if isinstance(part, TextBlockParam))


def _image_part(block: ImageBlockParam) -> dict[str, Any]:
    source = block.source
    if source.type == "base64":
        url = f"data:{source.media_type or 'image/png'};base64,{source.data or ''}"
    else:
        url = source.url or ""
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_choice(choice: Any) -> dict[str, Any]:
    if isinstance(choice, ToolChoiceNone):
        return {"tool_choice": "none"}
    out: dict[str, Any] = {}
    if isinstance(choice, ToolChoiceAuto):
        out["tool_choice"] = "auto"
    elif isinstance(choice, ToolChoiceAny):
        out["tool_choice"] = "required"
    else:
        out["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    if choice.disable_parallel_tool_use:
        out["parallel_tool_calls"] = False
    return out


# --- The answer -----------------------------------------------------------------------------


def message_id(completion_id: str | None) -> str:
    return "msg_" + str(completion_id or "").removeprefix("chatcmpl-")


def tool_use_id(call_id: str | None) -> str:
    """``toolu_…`` for a call id (ids the client sent as ``tool_use`` come back unchanged)."""
    call_id = str(call_id or "")
    return call_id if call_id.startswith("toolu_") else "toolu_" + call_id.removeprefix("call_")


def tool_input(arguments: str | None) -> dict[str, Any]:
    """A call's arguments as an object (``{}`` when they are not one, e.g. cut short)."""
    try:
        value = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def stop_of(finish: str | None, text: str, stops: list[str]) -> tuple[StopReason, str | None, str]:
    """The stop reason, the stop sequence and the text without it (see the module's docstring)."""
    if finish == "stop":
        for stop in sorted(stops, key=len, reverse=True):
            if stop and text.endswith(stop):
                return "stop_sequence", stop, text[: len(text) - len(stop)]
    return STOP_REASONS.get(finish or "", "end_turn"), None, text


def usage_of(usage: dict[str, Any]) -> MessageUsage:
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return MessageUsage(
        input_tokens=max(0, int(usage.get("prompt_tokens") or 0) - cached),
        output_tokens=int(usage.get("completion_tokens") or 0),
        cache_read_input_tokens=cached, cache_creation_input_tokens=0,
    )


def to_message(completion: dict[str, Any], model: str, stops: list[str]) -> Message:
    """A whole chat completion (one choice) as a message."""
    choice = (completion.get("choices") or [{}])[0]
    reply = choice.get("message") or {}
    reason, sequence, text = stop_of(choice.get("finish_reason"), reply.get("content") or "",
                                     stops)
    content: list[ContentBlock] = [TextBlock(text=text)] if text else []
    for call in reply.get("tool_calls") or ():
        fn = call.get("function") or {}
        content.append(ToolUseBlock(id=tool_use_id(call.get("id")), name=fn.get("name", ""),
                                    input=tool_input(fn.get("arguments"))))
    return Message(id=message_id(completion.get("id")), model=model, content=content,
                   stop_reason=reason, stop_sequence=sequence,
                   usage=usage_of(completion.get("usage") or {}),
                   metrics=completion.get("metrics"))


class MessageStream(ChunkTranslator[StreamEvent]):
    """Chat-completion chunks in, Messages stream events out: ``feed`` each chunk, then
    ``end``. With stop sequences, the text's last characters are held back until the finish,
    so that a matched sequence (kept by ``include_stop_str_in_output``) never goes out."""

    def __init__(self, model: str, stops: list[str]) -> None:
        super().__init__()
        self.model = model
        self.stops = [s for s in stops if s]
        self._hold = max((len(s) for s in self.stops), default=0)
        self._started = False
        self._pinged = False
        self._index = -1  # the open content block's index
        self._open: str | None = None  # its type
        self._held = ""  # text not yet sent (may turn out to be a stop sequence)
        self._tools: dict[int, int] = {}  # tool call index -> content block index

    def _opening(self, chunk: dict[str, Any]) -> list[StreamEvent]:
        return self._start(chunk) if not self._started else []

    def end(self) -> list[StreamEvent]:
        """The events after the last chunk: the rest of the text, the stop reason, usage."""
        events: list[StreamEvent] = self._start({}) if not self._started else []
        reason, sequence, text = stop_of(self._finish, self._held, self.stops)
        self._held = ""
        if text:
            events += self._emit_text(text)
        events += self._close_block()
        if not self._pinged:
            events.append(PingEvent())
        usage = usage_of(self._usage)
        events.append(MessageDeltaEvent(
            delta=MessageDelta(stop_reason=reason, stop_sequence=sequence),
            usage=MessageDeltaUsage(output_tokens=usage.output_tokens,
                                    input_tokens=usage.input_tokens,
                                    cache_read_input_tokens=usage.cache_read_input_tokens),
            metrics=self._metrics))
        events.append(MessageStopEvent())
        return events

    def _start(self, chunk: dict[str, Any]) -> list[StreamEvent]:
        self._started = True
        message = Message(id=message_id(chunk.get("id")), model=self.model, content=[],
                          stop_reason=None, stop_sequence=None,
                          usage=MessageUsage(input_tokens=0, output_tokens=0))
        return [MessageStartEvent(message=message)]

    def _open_block(self, block: ContentBlock) -> list[StreamEvent]:
        events = self._close_block()
        self._index += 1
        self._open = block.type
        events.append(ContentBlockStartEvent(index=self._index, content_block=block))
        if not self._pinged:  # after the first block starts, as Anthropic's API does
            self._pinged = True
            events.append(PingEvent())
        return events

    def _close_block(self) -> list[StreamEvent]:
        if self._open is None:
            return []
        self._open = None
        return [ContentBlockStopEvent(index=self._index)]

    def _text(self, text: str) -> list[StreamEvent]:
        if not self._hold:
            return self._emit_text(text)
        self._held += text
        cut = len(self._held) - self._hold
        if cut <= 0:
            return []
        out, self._held = self._held[:cut], self._held[cut:]
        return self._emit_text(out)

    def _emit_text(self, text: str) -> list[StreamEvent]:
        events = [] if self._open == "text" else self._open_block(TextBlock(text=""))
        events.append(ContentBlockDeltaEvent(index=self._index, delta=TextDelta(text=text)))
        return events

    def _tool_call(self, call: dict[str, Any]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if self._held:  # text before a call is never a stop sequence's start
            events += self._emit_text(self._held)
            self._held = ""
        fn = call.get("function") or {}
        position = int(call.get("index") or 0)
        if position not in self._tools:
            events += self._open_block(ToolUseBlock(id=tool_use_id(call.get("id")),
                                                    name=fn.get("name") or "", input={}))
            self._tools[position] = self._index
        if fn.get("arguments"):
            if self._tools[position] != self._index:
                return events  # a delta of an earlier call after a later one began: not sent
            events.append(ContentBlockDeltaEvent(
                index=self._index, delta=InputJSONDelta(partial_json=fn["arguments"])))
        return events
