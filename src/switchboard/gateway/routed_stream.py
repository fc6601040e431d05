"""``RoutedStream``: a stream the router has started (its first event already in), passed through
event by event, measured (usage, timing, cost) and settled with the router's health bookkeeping
however it ends: completed, failed mid-way, or closed because the client left."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from switchboard.gateway.accounting import RequestClock, UsageCounter, response_metrics
from switchboard.gateway.config import ModelRoute
from switchboard.gateway.providers.base import StreamEvent, UpstreamFailure, UpstreamStream
from switchboard.protocol.chat import ChatCompletionRequest

if TYPE_CHECKING:
    from switchboard.gateway.router import Deployment, ProviderRouter


class RoutedStream:
    """A started stream: the upstream's events, then (when asked) a usage chunk with metrics."""

    def __init__(
        self,
        router: ProviderRouter,
        dep: Deployment,
        route: ModelRoute | None,
        request: ChatCompletionRequest,
        upstream: UpstreamStream,
        events: AsyncIterator[StreamEvent],
        first: StreamEvent,
        clock: RequestClock,
        include_usage: bool,
    ) -> None:
        self.router = router
        self.deployment = dep
        self.route = route
        self._request = request
        self._upstream = upstream
        self._events = events
        self._first = first
        self._clock = clock
        self._include_usage = include_usage
        self.metrics: dict[str, Any] | None = None
        self.usage: dict[str, Any] | None = None
        self.failure: UpstreamFailure | None = None
        self.completed = False  # the upstream's stream reached its end
        self._counter = UsageCounter()
        self._closed = False

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._run()

    async def _run(self) -> AsyncIterator[StreamEvent]:
        counter = self._counter
        head = self._first.chunk
        event: StreamEvent | None = self._first
        try:
            while event is not None:
                if counter.observe_chunk(event.chunk):
                    self._clock.token()
                if not (event.chunk.get("usage") and not event.chunk.get("choices")):
                    yield event  # a usage-only chunk is replaced by ours below
                event = await anext(self._events, None)
        except UpstreamFailure as failure:
            self.failure = failure
            self._finish(failure)
            raise
        except BaseException:
            self._finish(None, "cancelled")
            raise
        self._finish(None)
        if self._include_usage:
            yield StreamEvent({"id": head.get("id"), "object": "chat.completion.chunk",
                               "created": head.get("created"), "model": head.get("model"),
                               "choices": [], "usage": self.usage, "metrics": self.metrics})

    @property
    def output_text(self) -> str:
        """The text (and tool-call arguments) streamed so far."""
        return "".join(self._counter.text)

    def _measure(self) -> None:
        """Usage and metrics of what streamed so far (a cut stream is charged what it sent)."""
        self._clock.stop()
        usage, estimated = self._counter.final(self._request.wire(), self.router.tokenize)
        price = self.router.price(self.deployment, self.route)
        self.usage = usage
        self.metrics = response_metrics(usage, price, self._clock, estimated)

    def _finish(self, failure: UpstreamFailure | None, outcome: str = "success") -> None:
        if self._closed:
            return
        self._closed = True
        self.completed = failure is None and outcome == "success"
        self._measure()
        if failure is not None:
            self.router.failed(self.deployment, failure)
        elif outcome == "success":
            self.router.succeeded(self.deployment, self._clock)
        else:
            self.router.end(self.deployment, outcome)

    async def aclose(self) -> None:
        self._finish(None, "cancelled")
        await self._upstream.aclose()
