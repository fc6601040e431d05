"""``Pipeline``: the one life of every generation request, whichever dialect it arrived in.

A route translates its dialect into the canonical request (``ChatCompletionRequest``) and calls
``Pipeline.generate``, which

1. **admits** it: the caller's key may use the model, its limits and budget hold the request's
   worst case (``admission.worst_case``);
2. **augments** it: retrieval tools are searched and their chunks put into the prompt;
3. **routes** it: the ``ProviderRouter`` picks deployments, retries and falls back;
4. watches the client: if it leaves before the answer, the work is cancelled;
5. **settles** it: exactly one ledger row, with what the request used and cost.

It returns an ``Answered`` (a whole chat completion), a ``Streaming`` (chat completion chunks,
settled when closed) or ``None`` when the client left; a refusal or failure is raised as an
``APIError`` (already settled). Embeddings go through the same admission and settlement
(``Pipeline.embed``). Nothing here knows HTTP: the route hands in a ``Caller``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from switchboard.errors import APIError, ModelNotFound
from switchboard.gateway.accounting import RequestClock
from switchboard.gateway.providers.base import StreamEvent
from switchboard.gateway.router import ProviderRouter, RoutedStream
from switchboard.governance.governor import Admission, Governor
from switchboard.governance.keys import Principal
from switchboard.pipeline import embeddings
from switchboard.pipeline.admission import prompt_estimate, reachable, worst_case
from switchboard.pipeline.disconnect import until_gone
from switchboard.pipeline.failures import to_api_error
from switchboard.pipeline.settlement import answered, cut_off, failed, streamed
from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.protocol.embeddings import EmbeddingRequest
from switchboard.retrieval.augment import Retrieval, augment, retrieval_tools
from switchboard.retrieval.buckets import BucketService
from switchboard.retrieval.service import EmbeddingService
from switchboard.serving import ChatRun, ChatService, LocalModel, ModelCatalog
from switchboard.serving.chat import started_runs
from switchboard.settings import Settings

DEPLOYMENT_HEADER = "x-switchboard-deployment"


@dataclass
class Caller:
    """Who sent a request and how to tell that they have gone (the HTTP layer fills it in)."""

    principal: Principal = field(default_factory=Principal)
    request_id: str | None = None
    session_id: str | None = None  # a session header; the request's own session_id wins
    disconnected: Callable[[], Awaitable[None]] | None = None  # returns once the client left


@dataclass
class Answered:
    """A whole answer: OpenAI's ``chat.completion`` (or embeddings list) with ``usage`` and
    ``metrics``, and the headers to send with it."""

    completion: dict[str, Any]
    deployment: str
    provider: str
    headers: dict[str, str]


class Streaming:
    """A started stream of ``chat.completion.chunk`` events (the last one carrying ``usage``
    and ``metrics`` when asked for, and a retrieval report when the request had one).
    ``close`` ends it and settles the request; it is safe to call more than once."""

    def __init__(self, stream: RoutedStream, admission: Admission, headers: dict[str, str],
                 found: Retrieval | None) -> None:
        self.stream = stream
        self.headers = headers
        self._admission = admission
        self._found = found

    @property
    def deployment(self) -> str:
        return self.stream.deployment.id

    @property
    def provider(self) -> str:
        return self.stream.deployment.kind

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[StreamEvent]:
        if self._found is None:
            async for event in self.stream:
                yield event
            return
        held: StreamEvent | None = None
        async for event in self.stream:
            if held is not None:
                yield held
            held = event
        if held is not None:  # re-serialized with the report on it
            yield StreamEvent({**held.chunk, "retrieval": self._found.report()})

    async def close(self) -> None:
        await self.stream.aclose()
        await self._admission.finish(streamed(self.stream))


class Pipeline:
    def __init__(self, router: ProviderRouter, governor: Governor, buckets: BucketService,
                 embedder: EmbeddingService, catalog: ModelCatalog, settings: Settings) -> None:
        self.router = router
        self.governor = governor
        self.buckets = buckets
        self.embedder = embedder
        self.catalog = catalog
        self.settings = settings

    async def admit(self, request: ChatCompletionRequest, caller: Caller, endpoint: str,
                    deployment: str | None = None) -> Admission:
        """Raises ``APIError`` (404 unknown model, 403 model not allowed, 429 over a limit)."""
        try:
            names = self.router.public_names(request.model, deployment)
            return await self.governor.admit(
                caller.principal, names[0], names,
                endpoint=endpoint, request_id=caller.request_id,
                session_id=request.session_id or caller.session_id,
                stream=bool(request.stream), body=request.wire(),
                reserve=worst_case(self.router, self.settings, self.catalog, request,
                                   deployment),
            )
        except Exception as exc:
            raise to_api_error(exc) from exc

    async def generate(
        self,
        request: ChatCompletionRequest,
        caller: Caller,
        *,
        endpoint: str = "chat.completions",
        deployment: str | None = None,
        include_usage: bool | None = None,
        retries: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answered | Streaming | None:
        """Admit, augment, route and settle one request (see the module's docstring).
        ``deployment``: only that dedicated one; ``include_usage``: the stream's last chunk
        carries usage and metrics (default: as the request's ``stream_options`` say);
        ``retries``: overrides the model's; ``headers``: sent with any answer or error."""
        headers = dict(headers or {})
        try:
            admission = await self.admit(request, caller, endpoint, deployment)
        except APIError as error:
            error.headers.update(headers)
            raise
        headers.update(admission.headers)
        found: Retrieval | None = None
        tenant = caller.principal.key_id  # None: the admin key or an open server
        runs: list[ChatRun] = []  # the local runs started for it, charged if the client leaves
        clock = RequestClock()
        listed = started_runs.set(runs)  # the tasks of _until_gone start with this context
        try:
            if retrieval_tools(request):
                request, found = await augment(self.buckets, caller.principal, request)
            if request.stream:  # until the first event: retries, backoffs, keep-alives
                usage = request.include_usage if include_usage is None else include_usage
                stream = await until_gone(self.router.stream(
                    request, deployment, include_usage=usage, retries=retries, tenant=tenant),
                    caller.disconnected)
            else:
                answer = await until_gone(self.router.complete(
                    request, deployment, retries=retries, tenant=tenant), caller.disconnected)
        except Exception as exc:
            error = to_api_error(exc)
            await admission.finish(failed(error))
            error.headers.update(headers)
            raise error from exc
        finally:
            started_runs.reset(listed)
        if (stream if request.stream else answer) is None:  # the client left; work cancelled
            await admission.finish(cut_off(self.router, request, deployment, runs, clock))
            return None
        if request.stream:
            headers[DEPLOYMENT_HEADER] = stream.deployment.id
            return Streaming(stream, admission, headers, found)
        await admission.finish(answered(answer))
        if found is not None:
            answer.completion["retrieval"] = found.report()
        headers[DEPLOYMENT_HEADER] = answer.deployment.id
        return Answered(answer.completion, answer.deployment.id, answer.deployment.kind,
                        headers)


    async def embed(self, request: EmbeddingRequest, caller: Caller) -> Answered | None:
        """An embeddings request, admitted and settled like a generation (endpoint
        ``embeddings``); ``None`` when the client left first."""
        result = await embeddings.embed(self, self.embedder, request, caller)
        if result is None:
            return None
        payload, deployment, headers = result
        provider = "local" if deployment == "local" else self.router.deployments[deployment].kind
        return Answered(payload, deployment, provider, {**headers, DEPLOYMENT_HEADER: deployment})

    def check_model(self, model: str | None, caller: Caller) -> list[str]:
        """The names ``model`` goes by, once the caller's key may use it: the same 404 and 403
        as admission gives, for the requests that are not metered (token counts)."""
        try:
            names = self.router.public_names(model)
        except ModelNotFound as exc:
            raise to_api_error(exc) from exc
        key = caller.principal.key
        if key is not None and not key.allows(*names):
            raise APIError(403, f"This API key may not use the model {model!r}.",
                           param="model", code="model_not_allowed")
        return names

    async def prompt_tokens(self, request: ChatCompletionRequest,
                            caller: Caller) -> tuple[int, ...] | int:
        """The request's prompt, checked against the caller's model list (403): its exact tokens
        on a local model (tuple), else an estimate of their count (int). Not metered."""
        self.check_model(request.model, caller)
        dep, _ = reachable(self.router, request.model, None)[0]
        if dep.kind != "local":
            return prompt_estimate(self.router, request)
        return await self.local_prompt_tokens(request, self._loaded(dep.id))

    def local_model(self, model: str | None, caller: Caller) -> LocalModel:
        """The local model a request names, once the caller's key may use it (404, 403; a 400
        naming ``model`` when it is served upstream): for the tokenizer endpoints."""
        self.check_model(model, caller)
        dep, _ = reachable(self.router, model, None)[0]
        if dep.kind != "local":
            raise APIError(400, f"model: {model!r} is served by an upstream; tokenize and "
                           "detokenize answer for local models only", param="model",
                           code="unsupported_model")
        return self._loaded(dep.id)

    @staticmethod
    async def local_prompt_tokens(request: ChatCompletionRequest,
                                  model: LocalModel) -> tuple[int, ...]:
        """The prompt's tokens exactly as a generation would run them (in a worker thread)."""
        return await asyncio.to_thread(ChatService.prompt_tokens, request, model)

    def _loaded(self, deployment: str) -> LocalModel:
        try:
            return self.catalog.get(deployment)
        except Exception as exc:  # loading, or failed to load
            raise to_api_error(exc) from exc
