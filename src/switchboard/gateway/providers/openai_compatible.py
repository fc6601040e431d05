"""Any server that speaks OpenAI's chat-completions API: vLLM, llama.cpp's server, Ollama, OpenAI,
Telnyx, Ektos, Telkom (``x-api-key``), another Switchboard.

The client's JSON body is forwarded with the upstream's model name, the constraint spelled in the
upstream's dialect and, for streams, ``stream_options.include_usage`` switched on. SSE events are
forwarded as the upstream's own bytes; each is parsed once (orjson) so usage can be read. One
pooled aiohttp session per deployment, kept alive across requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from switchboard.gateway.providers.base import (
    Call,
    ProviderResult,
    StreamEvent,
    UpstreamFailure,
)
from switchboard.gateway.providers.dialects import translate_constraint
from switchboard.gateway.providers.registry import ProviderContext, register
from switchboard.gateway.providers.transport import StallWatch, UpstreamClient, sse_payloads
from switchboard.gateway.providers.upstream_options import UpstreamDeployment

# Our own request fields that mean nothing upstream.
LOCAL_ONLY_FIELDS = ("api_key_ref", "session_id")


class OpenAICompatibleDeployment(UpstreamDeployment):
    """An OpenAI-compatible upstream's options: those of every upstream (``dialect`` included)."""


class OpenAICompatibleProvider:
    def __init__(self, config: OpenAICompatibleDeployment, api_key: str | None) -> None:
        self.config = config
        self._api_key = api_key
        self._url = f"{config.base_url}/chat/completions"
        self._http = UpstreamClient(config)

    def headers(self, call: Call | None, api_key: str | None = None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self.config.headers}
        key = (call.api_key if call else api_key) or self._api_key
        if key:
            if self.config.auth == "x-api-key":
                headers["x-api-key"] = key
            else:
                headers["Authorization"] = f"Bearer {key}"
        return headers

    def payload(self, call: Call, stream: bool) -> bytes:
        body = dict(call.body)
        for name in LOCAL_ONLY_FIELDS:
            body.pop(name, None)
        body["model"] = self.config.model
        translate_constraint(body, call.request, self.config.dialect)
        if stream:
            body["stream"] = True
            options = dict(body.get("stream_options") or {})
            options["include_usage"] = True
            body["stream_options"] = options
        else:
            body.pop("stream_options", None)
            body["stream"] = False
        return orjson.dumps(body)

    async def complete(self, call: Call) -> ProviderResult:
        completion = await self._http.post(
            self._url, self.payload(call, stream=False), self.headers(call)
        )
        if not isinstance(completion, dict) or "choices" not in completion:
            raise UpstreamFailure("bad_response", "the upstream's answer is not a chat completion")
        return ProviderResult(completion)

    async def embed(self, body: dict[str, Any], api_key: str | None) -> dict[str, Any]:
        payload = {k: v for k, v in body.items() if k not in LOCAL_ONLY_FIELDS}
        payload["model"] = self.config.model
        answer = await self._http.post(f"{self.config.base_url}/embeddings",
                                       orjson.dumps(payload), self.headers(None, api_key))
        if not isinstance(answer, dict) or not isinstance(answer.get("data"), list):
            raise UpstreamFailure("bad_response", "the upstream's answer is not an embeddings list")
        return answer

    async def stream(self, call: Call) -> SSEStream:
        resp = await self._http.open_stream(
            self._url, self.payload(call, stream=True), self.headers(call)
        )
        return SSEStream(resp, self.config.stall_timeout_s)

    async def close(self) -> None:
        await self._http.close()


class SSEStream:
    """The upstream's SSE events as ``StreamEvent``s, raw bytes kept for forwarding."""

    def __init__(self, resp: aiohttp.ClientResponse, stall_timeout_s: float) -> None:
        self._resp = resp
        self._stall = stall_timeout_s

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[StreamEvent]:
        watch = StallWatch(self._stall)
        async for payload in sse_payloads(self._resp, watch):
            watch.progressed()
            yield _event(payload)

    async def aclose(self) -> None:
        self._resp.close()


def _event(payload: bytes) -> StreamEvent:
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise UpstreamFailure("bad_response", "the upstream sent an invalid stream event") from exc
    if not isinstance(chunk, dict):
        raise UpstreamFailure("bad_response", "the upstream sent an invalid stream event")
    return StreamEvent(chunk, b"data: " + payload + b"\n\n")


def build(config: OpenAICompatibleDeployment, context: ProviderContext) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(config, context.key_of(config))


register("openai-compatible", build, OpenAICompatibleDeployment)
