"""A local deployment: the request runs on this process's engine through ``ChatService``.

Engine back-pressure (queue full, model still loading) becomes a retryable ``UpstreamFailure`` so
the router can fall back; everything else a local run refuses (unsupported parameter, prompt too
long) is a client error and propagates as is. Cancelling the caller cancels the sequences.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from switchboard.engine import EngineOverloaded
from switchboard.gateway.providers.base import (
    Call,
    ProviderResult,
    StreamEvent,
    UpstreamFailure,
    no_embeddings,
)
from switchboard.gateway.providers.registry import ProviderContext, register
from switchboard.protocol.chat import StreamOptions
from switchboard.protocol.gateway_section import LOCAL_KIND
from switchboard.serving import ChatRun, ChatService, ModelsLoading
from switchboard.serving.deployments import LocalDeployment


class LocalProvider:
    def __init__(self, config: LocalDeployment, service: ChatService) -> None:
        self.config = config
        self.service = service

    async def _start(self, call: Call, stream: bool = False) -> ChatRun:
        update: dict[str, object] = {"model": self.config.id}
        if stream:  # always ask for usage; the router decides whether the client sees it
            options = call.request.stream_options or StreamOptions()
            update["stream_options"] = options.model_copy(update={"include_usage": True})
        request = call.request.model_copy(update=update)
        try:
            return await self.service.start(request, lane=self.config.id, tenant=call.tenant)
        except EngineOverloaded as exc:
            raise UpstreamFailure(
                "overloaded", str(exc), 429, retry_after_s=float(exc.retry_after_s)
            ) from exc
        except ModelsLoading as exc:
            raise UpstreamFailure("overloaded", f"model not ready: {exc}", 503, retry_after_s=1.0) \
                from exc

    async def complete(self, call: Call) -> ProviderResult:
        run = await self._start(call)
        try:
            completion = await self.service.collect(run)
        except asyncio.CancelledError:
            run.cancel()
            raise
        ttft = run.first_output_at - run.started_at if run.first_output_at else None
        return ProviderResult(completion.model_dump(mode="json"), time_to_first_token_s=ttft)

    async def stream(self, call: Call) -> LocalStream:
        return LocalStream(self.service, await self._start(call, stream=True))

    async def embed(self, body: dict[str, Any], api_key: str | None) -> dict[str, Any]:
        raise no_embeddings("local")

    async def close(self) -> None:
        return None


class LocalStream:
    def __init__(self, service: ChatService, run: ChatRun) -> None:
        self._service = service
        self._run = run

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[StreamEvent]:
        try:
            async for chunk in self._service.stream(self._run):
                yield StreamEvent(chunk.model_dump(mode="json"))
        finally:
            self._run.cancel()

    async def aclose(self) -> None:
        self._run.cancel()


def build(config: LocalDeployment, context: ProviderContext) -> LocalProvider:
    return LocalProvider(config, context.service)


register(LOCAL_KIND, build, LocalDeployment)
