"""OpenAI's Responses API onto chat completions and back, for ``POST /v1/responses``.

Request: the input (after the stored items of ``previous_response_id``) becomes chat messages:
``instructions`` → a system message first; message items → messages of their role (``input_text``
and ``output_text`` parts → text, ``input_image`` → ``image_url``); ``function_call`` items → the
preceding assistant message's ``tool_calls``; ``function_call_output`` items → ``tool`` messages.
Function tools, ``tool_choice``, ``text.format`` (→ ``response_format``), ``max_output_tokens``,
``reasoning.effort`` (→ ``reasoning_effort``, which a model without reasoning refuses) and the
sampling fields map to their chat forms; what has no chat form is refused by name
(``refusal_of``). Answer: a chat completion → a response (a ``message`` item with one
``output_text`` part, then one ``function_call`` item per tool call; ``length`` → ``incomplete``),
and a chunk stream → the Responses stream events (``ResponseStream``).
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import TypeAdapter

from switchboard.protocol.anthropic_translation import UntranslatableRequest
from switchboard.protocol.responses_api import (
    FunctionCallItem,
    FunctionCallOutput,
    FunctionCallOutputItem,
    IncompleteDetails,
    InputImage,
    InputItem,
    InputText,
    MessageItem,
    OutputMessage,
    OutputText,
    OutputTextPart,
    Refusal,
    ResponseObject,
    ResponsesRequest,
    ResponseUsage,
    TextFormatJSONObject,
    TextFormatJSONSchema,
    new_id,
)

__all__ = ["UntranslatableRequest", "finished", "input_items", "refusal_of", "response_shell",
           "to_chat_body", "to_response", "usage_of"]

ITEMS = TypeAdapter(list[InputItem])
# chat-completions fields the Responses API spells its own way: sent as extra fields, refused
CHAT_SPELLINGS = {
    "messages": "input", "max_tokens": "max_output_tokens",
    "max_completion_tokens": "max_output_tokens", "response_format": "text.format",
    "functions": "tools", "function_call": "tool_choice", "reasoning_effort": "reasoning.effort",
    "verbosity": "text.verbosity", "logprobs": "include", "n": None, "stream_options": None,
}
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def refusal_of(req: ResponsesRequest) -> UntranslatableRequest | None:
    """The first field set to something Switchboard cannot honour, as a 400 to raise."""
    def no(param: str, why: str) -> UntranslatableRequest:
        return UntranslatableRequest(param, f"'{param}' is not supported: {why}")

    if req.background:
        return no("background", "responses are generated while the request waits")
    if req.conversation is not None:
        return no("conversation", "conversations are not stored; chain responses with "
                                  "previous_response_id")
    if req.prompt is not None:
        return no("prompt", "there are no stored prompt templates; send instructions and input")
    if req.include:
        return no("include", f"no extra output can be included ({', '.join(req.include)})")
    if req.truncation == "auto":
        return no("truncation", "only 'disabled' is available (a prompt over the context is "
                                "refused)")
    if req.max_tool_calls is not None:
        return no("max_tool_calls", "the number of tool calls cannot be capped")
    if req.top_logprobs:
        return no("top_logprobs", "log probabilities are not returned by this API")
    if req.context_management:
        return no("context_management", "the context is not compacted")
    if req.reasoning is not None and (req.reasoning.summary or req.reasoning.generate_summary):
        return no("reasoning.summary", "no reasoning summaries are produced")
    for name in sorted(req.model_extra or {}):
        if name in CHAT_SPELLINGS:
            instead = CHAT_SPELLINGS[name]
            return UntranslatableRequest(name, f"'{name}' is a chat completions field" + (
                f"; the Responses API spells it '{instead}'" if instead else
                " with no Responses form"))
    items = req.input if isinstance(req.input, list) else []
    for i, item in enumerate(items):
        parts = item.content if isinstance(item, MessageItem) else (
            item.output if isinstance(item, FunctionCallOutputItem) else None)
        for j, part in enumerate(parts if isinstance(parts, list) else ()):
            where = f"input[{i}].{'content' if isinstance(item, MessageItem) else 'output'}[{j}]"
            if isinstance(part, InputImage) and not part.image_url:
                return no(where, "images are taken by image_url (a URL or data URL); there are "
                                 "no uploaded files")
            if isinstance(part, InputImage) and isinstance(item, FunctionCallOutputItem):
                return no(where, "function call outputs are text")
    return None


# --- Input items ----------------------------------------------------------------------------


def input_items(req: ResponsesRequest) -> list[dict[str, Any]]:
    """The request's input as stored items: each with an id, message content as parts."""
    if isinstance(req.input, str):
        return [_message_item("user", req.input)]
    out: list[dict[str, Any]] = []
    for item in req.input:
        if isinstance(item, MessageItem):
            stored = _message_item(item.role, item.content, item.id)
        elif isinstance(item, FunctionCallItem):
            stored = {"id": item.id or new_id("fc"), "type": "function_call",
                      "status": item.status or "completed", "call_id": item.call_id,
                      "name": item.name, "arguments": item.arguments}
        else:
            output = item.output if isinstance(item.output, str) else [
                part.model_dump(exclude_none=True) for part in item.output]
            stored = {"id": item.id or new_id("fco"), "type": "function_call_output",
                      "status": item.status or "completed", "call_id": item.call_id,
                      "output": output}
        out.append(stored)
    return out


def _message_item(role: str, content: str | list[Any], item_id: str | None = None
                  ) -> dict[str, Any]:
    if isinstance(content, str):
        kind = "output_text" if role == "assistant" else "input_text"
        parts: list[dict[str, Any]] = [{"type": kind, "text": content}]
        if role == "assistant":
            parts[0]["annotations"] = []
    else:
        parts = [part.model_dump(exclude_none=True) for part in content]
    return {"id": item_id or new_id("msg"), "type": "message", "role": role,
            "content": parts, "status": "completed"}


# --- The chat request -----------------------------------------------------------------------


def to_chat_body(req: ResponsesRequest, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat-completions body (a dict, to validate as ``ChatCompletionRequest``) for the
    request whose whole input, stored history first, is ``items``."""
    body: dict[str, Any] = {k: v for k, v in (req.model_extra or {}).items()
                            if k not in CHAT_SPELLINGS}
    messages: list[dict[str, Any]] = []
    if req.instructions:
        messages.append({"role": "system", "content": req.instructions})
    messages.extend(_messages(ITEMS.validate_python(items)))
    body.update(model=req.model, messages=messages)
    if req.tools:
        body["tools"] = [{"type": "function", "function": {
            "name": t.name, **({"description": t.description} if t.description else {}),
            **({"parameters": t.parameters} if t.parameters is not None else {}),
            **({"strict": t.strict} if t.strict is not None else {})}} for t in req.tools]
    if req.tool_choice is not None:
        body["tool_choice"] = req.tool_choice if isinstance(req.tool_choice, str) else {
            "type": "function", "function": {"name": req.tool_choice.name}}
    if req.parallel_tool_calls is not None and req.tools:
        body["parallel_tool_calls"] = req.parallel_tool_calls
    fmt = req.text.format if req.text else None
    if isinstance(fmt, TextFormatJSONSchema):
        schema: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema_}
        if fmt.strict is not None:
            schema["strict"] = fmt.strict
        if fmt.description:
            schema["description"] = fmt.description
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif isinstance(fmt, TextFormatJSONObject):
        body["response_format"] = {"type": "json_object"}
    if req.text is not None and req.text.verbosity is not None:
        body["verbosity"] = req.text.verbosity
    if req.reasoning is not None and req.reasoning.effort is not None:
        body["reasoning_effort"] = req.reasoning.effort
    if req.max_output_tokens is not None:
        body["max_completion_tokens"] = req.max_output_tokens
    for name in ("temperature", "top_p", "user", "service_tier", "safety_identifier",
                 "prompt_cache_key"):
        value = getattr(req, name)
        if value is not None:
            body[name] = value
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _messages(items: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, FunctionCallItem):
            call = {"id": item.call_id, "type": "function",
                    "function": {"name": item.name, "arguments": item.arguments}}
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif isinstance(item, FunctionCallOutputItem):
            out.append({"role": "tool", "tool_call_id": item.call_id,
                        "content": _text(item.output)})
        elif item.role == "assistant":
            out.append({"role": "assistant", "content": _text(item.content) or None})
        elif item.role == "user":
            out.append({"role": "user", "content": _user_content(item.content)})
        else:
            out.append({"role": item.role, "content": _text(item.content)})
    return out


def _text(content: str | list[Any]) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.refusal if isinstance(part, Refusal) else getattr(part, "text", "")
                   for part in content)


def _user_content(content: str | list[Any]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, InputImage):
            parts.append({"type": "image_url", "image_url": {
                "url": part.image_url or "",
                **({"detail": part.detail} if part.detail in ("low", "high") else {})}})
        elif isinstance(part, InputText | OutputText):
            parts.append({"type": "text", "text": part.text})
        else:
            parts.append({"type": "text", "text": part.refusal})
    return parts


# --- The answer -----------------------------------------------------------------------------


def response_shell(req: ResponsesRequest, response_id: str, model: str,
                   created_at: int | None = None) -> ResponseObject:
    """The response before any output: the request's settings echoed, ``in_progress``."""
    text = req.text.model_dump(by_alias=True, exclude_none=True) if req.text else {}
    text.setdefault("format", {"type": "text"})
    return ResponseObject(
        id=response_id, created_at=created_at or int(time.time()), status="in_progress",
        instructions=req.instructions, max_output_tokens=req.max_output_tokens, model=model,
        parallel_tool_calls=req.parallel_tool_calls is not False,
        previous_response_id=req.previous_response_id, prompt_cache_key=req.prompt_cache_key,
        reasoning={"effort": req.reasoning.effort if req.reasoning else None, "summary": None},
        safety_identifier=req.safety_identifier, store=req.store is not False,
        temperature=req.temperature, text=text,
        tool_choice=(req.tool_choice if isinstance(req.tool_choice, str) else
                     req.tool_choice.model_dump() if req.tool_choice else "auto"),
        tools=[t.model_dump(exclude_none=True) for t in req.tools or ()],
        top_p=req.top_p, user=req.user, metadata=dict(req.metadata or {}),
    )


def usage_of(usage: dict[str, Any]) -> ResponseUsage:
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    return ResponseUsage.model_validate({
        "input_tokens": prompt, "output_tokens": completion, "total_tokens": prompt + completion,
        "input_tokens_details": {"cached_tokens": int(
            (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)},
        "output_tokens_details": {"reasoning_tokens": int(
            (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)},
    })


def finished(shell: ResponseObject, finish: str | None, usage: dict[str, Any] | None,
              metrics: dict[str, Any] | None) -> ResponseObject:
    reason = INCOMPLETE.get(finish or "")
    return shell.model_copy(update={
        "status": "incomplete" if reason else "completed",
        "incomplete_details": IncompleteDetails(reason=reason) if reason else None,  # type: ignore[arg-type]
        "completed_at": int(time.time()),
        "usage": usage_of(usage) if usage is not None else None, "metrics": metrics,
    })


def to_response(completion: dict[str, Any], shell: ResponseObject) -> ResponseObject:
    """A whole chat completion (its first choice) as the finished response."""
    choice = (completion.get("choices") or [{}])[0]
    reply = choice.get("message") or {}
    finish = choice.get("finish_reason")
    status = "incomplete" if finish in INCOMPLETE else "completed"
    output: list[Any] = []
    if reply.get("content"):
        output.append(OutputMessage(id=new_id("msg"), status=status,
                                    content=[OutputTextPart(text=reply["content"])]))
    for call in reply.get("tool_calls") or ():
        fn = call.get("function") or {}
        output.append(FunctionCallOutput(id=new_id("fc"), status="completed",
                                         call_id=str(call.get("id") or new_id("call")),
                                         name=fn.get("name") or "",
                                         arguments=fn.get("arguments") or ""))
    if output and status == "incomplete":
        output[-1].status = "incomplete"
    done = finished(shell, finish, completion.get("usage") or {}, completion.get("metrics"))
    return done.model_copy(update={"output": output})
