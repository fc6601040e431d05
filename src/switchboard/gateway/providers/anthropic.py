"""Anthropic's Messages API behind OpenAI's chat-completions shape, translated both ways.

Request: system and developer messages → ``system``; user/assistant turns → content blocks (text,
images); assistant ``tool_calls`` → ``tool_use`` blocks; ``tool`` messages → ``tool_result`` blocks
in a user turn; tools, ``tool_choice`` and ``parallel_tool_calls`` → their Anthropic forms.
Response: text and ``tool_use`` blocks → ``content`` and ``tool_calls``; stop reasons → OpenAI's
finish reasons; usage (with cache reads as cached tokens). Streams are translated event by event.
Parameters Anthropic cannot honour (``n`` > 1, logprobs, penalties, seed, constraints) get a 400.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from pydantic import Field, field_validator

from switchboard.errors import Unsupported
from switchboard.gateway.providers.base import (
    Call,
    ProviderResult,
    StreamEvent,
    UpstreamFailure,
    no_embeddings,
)
from switchboard.gateway.providers.registry import ProviderContext, register
from switchboard.gateway.providers.transport import StallWatch, UpstreamClient, sse_payloads
from switchboard.gateway.providers.upstream_options import UpstreamDeployment
from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.serving.constraints import requested_constraints

API_VERSION = "2023-06-01"
DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_MAX_TOKENS = 4096
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
          "tool_use": "tool_calls", "pause_turn": "stop", "refusal": "content_filter"}


class AnthropicDeployment(UpstreamDeployment):
    """Anthropic's options: those of every upstream, with Anthropic's own API as the default
    ``base_url`` (the key always goes in ``x-api-key``)."""

    base_url: str | None = Field(default=DEFAULT_BASE_URL, description="The API root.")

    @field_validator("base_url")
    @classmethod
    def _default_url(cls, value: str | None) -> str:
        return value or DEFAULT_BASE_URL


class AnthropicProvider:
    def __init__(self, config: AnthropicDeployment, api_key: str | None) -> None:
        self.config = config
        self._api_key = api_key
        self._url = f"{config.base_url}/v1/messages"
        self._http = UpstreamClient(config)

    def headers(self, call: Call) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "anthropic-version": API_VERSION,
                   **self.config.headers}
        key = call.api_key or self._api_key
        if key:
            headers["x-api-key"] = key
        return headers

    async def complete(self, call: Call) -> ProviderResult:
        data = orjson.dumps(to_messages_request(call.request, self.config.model or "", False))
        message = await self._http.post(self._url, data, self.headers(call))
        try:
            return ProviderResult(to_completion(message))
        except (KeyError, TypeError, AttributeError) as exc:
            raise UpstreamFailure("bad_response", "the upstream's answer is not a message") from exc

    async def stream(self, call: Call) -> AnthropicStream:
        data = orjson.dumps(to_messages_request(call.request, self.config.model or "", True))
        resp = await self._http.open_stream(self._url, data, self.headers(call))
        return AnthropicStream(resp, self.config.stall_timeout_s)

    async def embed(self, body: dict[str, Any], api_key: str | None) -> dict[str, Any]:
        raise no_embeddings("anthropic")

    async def close(self) -> None:
        await self._http.close()


def to_messages_request(req: ChatCompletionRequest, model: str, stream: bool) -> dict[str, Any]:
    _refuse_unsupported(req)
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for message in req.messages:
        m = message.model_dump(exclude_none=True)
        role = m["role"]
        if role in ("system", "developer"):
            system.append(_text(m.get("content")))
        elif role == "tool":
            block = {"type": "tool_result", "tool_use_id": m["tool_call_id"],
                     "content": _text(m.get("content"))}
            _append(messages, "user", [block])
        elif role == "assistant":
            blocks = _blocks(m.get("content"))
            for call in m.get("tool_calls") or []:
                fn = call["function"]
                blocks.append({"type": "tool_use", "id": call["id"], "name": fn["name"],
                               "input": _arguments(fn.get("arguments"))})
            _append(messages, "assistant", blocks)
        else:
            _append(messages, "user", _blocks(m.get("content")))
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": req.max_completion_tokens or req.max_tokens or DEFAULT_MAX_TOKENS,
    }
    if system:
        body["system"] = "\n\n".join(system)
    if stream:
        body["stream"] = True
    for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k")):
        value = getattr(req, ours)
        if value is not None:
            body[theirs] = value
    if req.stop:
        body["stop_sequences"] = [req.stop] if isinstance(req.stop, str) else list(req.stop)
    if req.user:
        body["metadata"] = {"user_id": req.user}
    if req.tools:
        body["tools"] = [
            {"name": t.function.name, "description": t.function.description or "",
             "input_schema": t.function.parameters or {"type": "object", "properties": {}}}
            for t in req.tools
        ]
        choice = _tool_choice(req)
        if choice is not None:
            body["tool_choice"] = choice
    return body


def _refuse_unsupported(req: ChatCompletionRequest) -> None:
    if req.n != 1:
        raise Unsupported("n", "this model's provider (Anthropic) returns one choice")
    for name in ("logprobs", "top_logprobs", "seed", "logit_bias"):
        if getattr(req, name):
            raise Unsupported(name, f"{name} is not supported by this model's provider (Anthropic)")
    for name in ("frequency_penalty", "presence_penalty"):
        if getattr(req, name):
            raise Unsupported(name, f"{name} is not supported by this model's provider (Anthropic)")
    if req.temperature is not None and req.temperature > 1:
        raise Unsupported("temperature",
                          "this model's provider (Anthropic) takes 0 ≤ temperature ≤ 1")
    found = requested_constraints(req)
    if found:
        raise Unsupported(found[0][0], f"{found[0][0]} cannot be enforced by Anthropic models")


def _tool_choice(req: ChatCompletionRequest) -> dict[str, Any] | None:
    choice = req.tool_choice
    parallel = {} if req.parallel_tool_calls is not False else {"disable_parallel_tool_use": True}
    if choice is None or choice == "auto":
        return {"type": "auto", **parallel} if parallel else None
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any", **parallel}
    name = choice.function.name if hasattr(choice, "function") else choice["function"]["name"]
    return {"type": "tool", "name": name, **parallel}


def _append(messages: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Anthropic wants alternating roles: consecutive turns of one role are merged."""
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": blocks})


def _blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        if part.get("type") == "text":
            blocks.append({"type": "text", "text": part["text"]})
        elif part.get("type") == "image_url":
            url = part["image_url"]["url"]
            if url.startswith("data:"):
                media, _, data = url[5:].partition(";base64,")
                source = {"type": "base64", "media_type": media, "data": data}
            else:
                source = {"type": "url", "url": url}
            blocks.append({"type": "image", "source": source})
        elif part.get("type") == "refusal":
            blocks.append({"type": "text", "text": part["refusal"]})
        else:
            raise Unsupported("messages", f"content parts of type {part.get('type')!r} "
                              "are not supported by this model's provider (Anthropic)")
    return blocks


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [])


def _arguments(arguments: str | None) -> Any:
    try:
        return json.loads(arguments or "{}")
    except json.JSONDecodeError as exc:
        raise Unsupported("messages", "tool_calls arguments must be a JSON object") from exc


def usage_of(usage: dict[str, Any]) -> dict[str, Any]:
    cached = int(usage.get("cache_read_input_tokens") or 0)
    prompt = int(usage.get("input_tokens") or 0) + cached + int(
        usage.get("cache_creation_input_tokens") or 0
    )
    completion = int(usage.get("output_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


def to_completion(message: dict[str, Any]) -> dict[str, Any]:
    texts, calls = [], []
    for block in message.get("content") or []:
        if block["type"] == "text":
            texts.append(block["text"])
        elif block["type"] == "tool_use":
            calls.append({"id": block["id"], "type": "function", "function": {
                "name": block["name"], "arguments": json.dumps(block.get("input") or {})}})
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        reply["tool_calls"] = calls
    return {
        "id": "chatcmpl-" + str(message.get("id", "")).removeprefix("msg_"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.get("model", ""),
        "choices": [{"index": 0, "message": reply, "logprobs": None,
                     "finish_reason": FINISH.get(message.get("stop_reason") or "", "stop")}],
        "usage": usage_of(message.get("usage") or {}),
    }


class AnthropicStream:
    """Anthropic's stream events as OpenAI chunks (role, content or tool-call deltas, finish,
    usage)."""

    def __init__(self, resp: aiohttp.ClientResponse, stall_timeout_s: float) -> None:
        self._resp = resp
        self._stall = stall_timeout_s

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[StreamEvent]:
        head: dict[str, Any] = {"id": "chatcmpl-", "object": "chat.completion.chunk",
                                "created": int(time.time()), "model": ""}
        usage: dict[str, Any] = {}
        tool_index: dict[int, int] = {}  # content block index -> tool call index

        watch = StallWatch(self._stall)  # every event but `ping` (a keep-alive) is progress

        def chunk(delta: dict[str, Any] | None, finish: str | None = None) -> StreamEvent:
            choices = [] if delta is None else [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            return StreamEvent({**head, "choices": choices})

        async for payload in sse_payloads(self._resp, watch):
            try:
                event = orjson.loads(payload)
                kind = event["type"]
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                raise UpstreamFailure("bad_response", "invalid Anthropic stream event") from exc
            if kind != "ping":
                watch.progressed()
            if kind == "message_start":
                message = event["message"]
                head["id"] = "chatcmpl-" + str(message.get("id", "")).removeprefix("msg_")
                head["model"] = message.get("model", "")
                usage.update(message.get("usage") or {})
                yield chunk({"role": "assistant", "content": ""})
            elif kind == "content_block_start":
                block = event["content_block"]
                if block["type"] == "tool_use":
                    index = tool_index.setdefault(event["index"], len(tool_index))
                    yield chunk({"tool_calls": [{"index": index, "id": block["id"],
                                                 "type": "function", "function": {
                                                     "name": block["name"], "arguments": ""}}]})
                elif block["type"] == "text" and block.get("text"):
                    yield chunk({"content": block["text"]})
            elif kind == "content_block_delta":
                delta = event["delta"]
                if delta["type"] == "text_delta":
                    yield chunk({"content": delta["text"]})
                elif delta["type"] == "input_json_delta" and delta.get("partial_json"):
                    index = tool_index.get(event["index"], 0)
                    yield chunk({"tool_calls": [{"index": index, "function": {
                        "arguments": delta["partial_json"]}}]})
            elif kind == "message_delta":
                usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
                reason = (event.get("delta") or {}).get("stop_reason")
                yield chunk({}, FINISH.get(reason or "", "stop"))
            elif kind == "message_stop":
                yield StreamEvent({**head, "choices": [], "usage": usage_of(usage)})
                return
            elif kind == "error":
                error = event.get("error") or {}
                raise UpstreamFailure(
                    "server_error", str(error.get("message") or "Anthropic stream error"),
                    body={"error": {"message": error.get("message"), "type": error.get("type"),
                                    "param": None, "code": None}},
                )

    async def aclose(self) -> None:
        self._resp.close()


def build(config: AnthropicDeployment, context: ProviderContext) -> AnthropicProvider:
    return AnthropicProvider(config, context.key_of(config))


register("anthropic", build, AnthropicDeployment)
