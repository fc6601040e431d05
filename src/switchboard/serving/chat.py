"""Chat completions on a local model: prompt rendering, engine runs and OpenAI-shaped results.

``ChatService.start`` does everything that can fail with a client error (unknown model, unsupported
parameter, prompt too long, queue full) before any byte is sent, the CPU-heavy part of it (chat
template, tokenizer, grammar compiler) in a worker thread; the returned ``ChatRun`` is then
either collected into one ``ChatCompletion`` or turned into stream chunks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

from switchboard.engine import GenerationRequest, SequenceHandle, StepOutput
from switchboard.engine.constraint import Constraint, GrammarError
from switchboard.engine.prompt_tokens import tokenize_prompt
from switchboard.engine.request import TokenLogprob
from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.protocol.responses import (
    AssistantReply,
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    CompletionTokensDetails,
    Delta,
    PromptTokenLogprob,
    TopLogprob,
    Usage,
    completion_id,
    now,
)
from switchboard.protocol.responses import TokenLogprob as WireTokenLogprob
from switchboard.serving.catalog import LocalModel, ModelCatalog
from switchboard.serving.constraints import GrammarRequest, requested_grammar
from switchboard.serving.metrics import ServingMetrics
from switchboard.serving.params import (
    Unsupported,
    beam_params,
    check_supported,
    samples_to_draw,
    sampling_params,
)
from switchboard.serving.raw_prompts import (
    RawPrompt,
    check_raw_prompt_fields,
    prepare_raw_prompts,
    prompt_entries,
)
from switchboard.serving.tool_parser import ToolCallParser
from switchboard.serving.tools import ToolPlan, call_format, plan_tools, render_prompt


class GenerationFailed(RuntimeError):
    """The engine failed mid-generation (reported as a 500-class error)."""


@dataclass(frozen=True)
class _Prepared:
    tokens: tuple[int, ...]
    tools: ToolPlan | None
    constraints: list[Constraint]
    raw: tuple[RawPrompt, ...] = ()  # a raw-prompt request's prompts (``tokens`` is the first's)

    @property
    def prompts(self) -> list[tuple[int, ...]]:
        return [p.tokens for p in self.raw] or [self.tokens]


# Where ``ChatService.start`` lists the runs it starts, for a caller that must account for them
# even if its task is cancelled (a client that hangs up is charged for the tokens decoded).
started_runs: ContextVar[list[ChatRun] | None] = ContextVar("started_runs", default=None)


@dataclass
class ChatRun:
    """The running choices of one request; outputs arrive on ``queue`` as ``(index, output)``."""

    model: LocalModel
    request: ChatCompletionRequest
    prompt_tokens: int
    queue: asyncio.Queue[tuple[int, StepOutput]]
    handles: list[SequenceHandle] = field(default_factory=list)
    expected: int = 0  # finished outputs to wait for (n)
    tools: ToolPlan | None = None  # outputs may be tool calls
    metrics: ServingMetrics | None = None
    id: str = field(default_factory=completion_id)
    created: int = field(default_factory=now)
    started_at: float = field(default_factory=time.perf_counter)
    first_output_at: float | None = None  # when the first token arrived
    generated: dict[int, int] = field(default_factory=dict)  # choice -> tokens decoded so far
    raw: tuple[RawPrompt, ...] = ()  # a raw prompt's n choices each (serving.raw_prompts)

    @property
    def n_prompts(self) -> int:
        return len(self.raw) or 1

    def cancel(self) -> None:
        for handle in self.handles:
            handle.cancel()

    def _count(self, index: int, out: StepOutput) -> None:
        self.generated[index] = max(self.generated.get(index, 0), out.completion_tokens)

    def tokens_generated(self) -> int:
        """Completion tokens decoded so far, every choice together, counting outputs that
        arrived but were not read (a cancelled run's last ones)."""
        while True:
            try:
                index, out = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            self._count(index, out)
        return sum(self.generated.values())

    async def outputs(self) -> AsyncIterator[tuple[int, StepOutput]]:
        """Every output until all choices have finished (an error raises)."""
        remaining = self.expected or len(self.handles)
        while remaining:
            index, out = await self.queue.get()
            self._count(index, out)
            if self.first_output_at is None:
                self.first_output_at = time.perf_counter()
            if out.finish_reason == "error":
                self.cancel()
                raise GenerationFailed(out.error or "generation failed")
            if out.finished:
                remaining -= 1
                if self.metrics is not None and out.metrics is not None:
                    self.metrics.observe(self.model.id, out.finish_reason or "stop", out.metrics)
            yield index, out


class ChatService:
    def __init__(
        self,
        catalog: ModelCatalog,
        default_max_tokens: int | None = None,
        metrics: ServingMetrics | None = None,
    ) -> None:
        self.catalog = catalog
        self.default_max_tokens = default_max_tokens
        self.metrics = metrics

    async def start(self, req: ChatCompletionRequest, lane: str | None = None,
                    tenant: str | None = None) -> ChatRun:
        """``lane`` names the deployment, for engines that keep capacity for dedicated ones;
        ``tenant`` who asks (an API key's id), for the engine's turns between tenants."""
        model = self.catalog.get(req.model)
        check_supported(req)
        check_raw_prompt_fields(req)
        self._check_token_ids(req, model)
        # Templating, tokenizing and grammar compiling take CPU in proportion to the request:
        # they run in a worker thread, so the event loop keeps answering everyone else.
        prepared = await asyncio.to_thread(self._prepare, req, model)
        draws = samples_to_draw(req)
        prompts = prepared.prompts
        run = ChatRun(
            model=model, request=req, prompt_tokens=sum(map(len, prompts)),
            queue=asyncio.Queue(), expected=draws * len(prompts), tools=prepared.tools,
            metrics=self.metrics, raw=prepared.raw,
        )
        tokens, constraints = prepared.tokens, prepared.constraints
        params = sampling_params(req, self.default_max_tokens, model.sampling_defaults)
        beam = beam_params(req)
        if beam is not None:  # one search; its n outputs are told apart by ``out.choice``
            jobs = [(None, GenerationRequest(tokens, params, beam=beam, lane=lane, tenant=tenant,
                                             constraint=constraints[0] if constraints else None))]
        else:
            jobs = [  # choice p * draws + i is prompt p's i-th
                (i, GenerationRequest(prompts[i // draws], params, seed_offset=i % draws,
                                      lane=lane, tenant=tenant,
                                      constraint=constraints[i] if constraints else None))
                for i in range(run.expected)
            ]
        try:
            for index, gen in jobs:
                run.handles.append(model.engine.submit(gen, self._sink(run, index)))
        except Exception:
            run.cancel()
            raise
        runs = started_runs.get()
        if runs is not None:
            runs.append(run)
        return run

    @classmethod
    def prompt_tokens(cls, req: ChatCompletionRequest, model: LocalModel) -> tuple[int, ...]:
        """The prompt's tokens exactly as a generation of ``req`` would run them (its template,
        tools and tokenizer); CPU-bound, for a worker thread."""
        return cls._prepare(req, model).tokens

    @classmethod
    def _prepare(cls, req: ChatCompletionRequest, model: LocalModel) -> _Prepared:
        """The prompt's tokens, the tool plan and one grammar matcher per choice (worker thread)."""
        if req.raw_prompts is not None:  # verbatim: no template, no tools
            raw = prepare_raw_prompts(req, model)
            constraints = cls._constraints(req, model, requested_grammar(req), len(raw))
            return _Prepared(raw[0].tokens, None, constraints, raw)
        tools = plan_tools(req, call_format(model.template))
        wanted = requested_grammar(req)
        if tools is not None and wanted is not None:
            raise Unsupported(wanted.param, f"{wanted.param} cannot be combined with tools")
        if tools is not None:
            wanted = GrammarRequest("tools", tools.grammar)
        constraints = cls._constraints(req, model, wanted)
        return _Prepared(cls._prompt_tokens(req, model, tools), tools, constraints)

    @staticmethod
    def _prompt_tokens(
        req: ChatCompletionRequest, model: LocalModel, tools: ToolPlan | None
    ) -> tuple[int, ...]:
        prompt = render_prompt(req, model.template, tools)
        return tuple(tokenize_prompt(model.llama, prompt, limit=model.context_length))

    @staticmethod
    def _sink(run: ChatRun, index: int | None) -> Callable[[StepOutput], None]:
        """Hand engine outputs (engine thread) to the run's queue (event loop) as (choice, out);
        ``index`` None takes the choice from the output (beam search)."""
        loop = asyncio.get_running_loop()

        def sink(out: StepOutput) -> None:
            choice = out.choice if index is None else index
            loop.call_soon_threadsafe(run.queue.put_nowait, (choice, out))

        return sink

    @staticmethod
    def _constraints(
        req: ChatCompletionRequest, model: LocalModel, wanted: GrammarRequest | None,
        prompts: int = 1,
    ) -> list[Constraint]:
        """One grammar matcher per choice (of each of ``prompts`` prompts)."""
        if wanted is None:
            return []
        grammar = model.engine.grammar
        try:
            grammar.check(wanted.grammar)
            first = grammar.matcher(wanted.grammar)
        except GrammarError as exc:
            raise Unsupported(wanted.param, f"{wanted.param} cannot be enforced: {exc}") from exc
        return [first] + [first.fork() for _ in range(samples_to_draw(req) * prompts - 1)]

    @staticmethod
    def _check_token_ids(req: ChatCompletionRequest, model: LocalModel) -> None:
        n_vocab = model.llama.n_vocab
        for key in req.logit_bias or {}:
            if int(key) >= n_vocab:
                raise Unsupported("logit_bias", f"token id {key} is outside the vocabulary")
        for token in req.stop_token_ids or []:
            if not 0 <= token < n_vocab:
                raise Unsupported("stop_token_ids", f"token id {token} is outside the vocabulary")

    async def collect(self, run: ChatRun) -> ChatCompletion:
        drawn = run.expected or run.request.n
        texts: list[list[str]] = [[] for _ in range(drawn)]
        logprobs: list[list[TokenLogprob]] = [[] for _ in range(drawn)]
        finish: list[str] = ["stop"] * drawn
        score = [0.0] * drawn
        scored: list[list[TokenLogprob] | None] = [None] * drawn  # prompt logprobs
        completion_tokens = 0
        cached = 0
        drafted = accepted = 0  # speculative tokens
        per_prompt = drawn // run.n_prompts
        async for index, out in run.outputs():
            texts[index].append(out.text)
            logprobs[index].extend(out.logprobs)
            if out.prompt_logprobs is not None:
                scored[index] = out.prompt_logprobs
            if out.finished:
                finish[index] = out.finish_reason or "stop"
                completion_tokens += out.completion_tokens
                if out.metrics is not None:
                    drafted += out.metrics.spec_drafted_tokens
                    accepted += out.metrics.spec_accepted_tokens
                score[index] = out.cumulative_logprob or 0.0
                if index % per_prompt == 0:  # each prompt's first choice
                    cached += out.cached_tokens
        n = run.request.n
        if per_prompt > n:  # best_of: keep each prompt's n samples with the best cumulative logprob
            best = [i for start in range(0, drawn, per_prompt)
                    for i in sorted(range(start, start + per_prompt), key=lambda i: score[i],
                                    reverse=True)[:n]]
            texts = [texts[i] for i in best]
            logprobs = [logprobs[i] for i in best]
            finish = [finish[i] for i in best]
            scored = [scored[i] for i in best]
        n *= run.n_prompts
        want_logprobs = bool(run.request.logprobs)
        echoes = [run.raw[i // run.request.n].echo if run.raw else "" for i in range(n)]
        replies = [AssistantReply(content=echoes[i] + "".join(texts[i])) for i in range(n)]
        if run.tools is not None:  # the same parser as the stream's, fed the whole output
            for i, reply in enumerate(replies):
                parser = ToolCallParser(run.tools.format, run.tools.names)
                parser.feed(reply.content or "")
                finish[i] = parser.finish(finish[i])
                if parser.mode == "calls":
                    reply.content, reply.tool_calls = None, parser.tool_calls() or None
        choices = [
            Choice(
                index=i,
                message=replies[i],
                logprobs=ChoiceLogprobs(content=_wire_logprobs(logprobs[i]))
                if want_logprobs
                else None,
                finish_reason=finish[i],  # type: ignore[arg-type]
                prompt_logprobs=self._prompt_entries(run, i, scored[i]),
            )
            for i in range(n)
        ]
        return ChatCompletion(
            id=run.id,
            created=run.created,
            model=run.model.id,
            choices=choices,
            usage=_usage(run.prompt_tokens, completion_tokens, cached, drafted, accepted),
            system_fingerprint=run.model.fingerprint,
        )

    async def stream(self, run: ChatRun) -> AsyncIterator[ChatCompletionChunk]:
        """Chunks in OpenAI's order: role, content deltas, finish_reason, optional usage.

        With vLLM's ``stream_options.continuous_usage_stats`` every chunk carries usage so far.
        """
        n = run.request.n * run.n_prompts
        generated = [0] * n  # tokens so far, per choice
        opened = [False] * n  # a raw prompt's echo and prompt logprobs were sent
        cached = 0
        drafted = accepted = 0  # speculative tokens
        options = run.request.stream_options
        continuous = bool(options and options.continuous_usage_stats)

        def chunk(choices: list[ChunkChoice], final: bool = False) -> ChatCompletionChunk:
            usage = _usage(run.prompt_tokens, sum(generated), cached, drafted, accepted) \
                if continuous or final else None
            return ChatCompletionChunk.model_construct(  # trusted values: skip validation
                id=run.id,
                created=run.created,
                model=run.model.id,
                choices=choices,
                usage=usage,
                system_fingerprint=run.model.fingerprint,
            )

        for i in range(n):
            yield chunk([ChunkChoice(index=i, delta=Delta(role="assistant", content=""))])
        want_logprobs = bool(run.request.logprobs)
        calls = [ToolCallParser(run.tools.format, run.tools.names) for _ in range(n)] \
            if run.tools else []
        async for index, out in run.outputs():
            generated[index] = out.completion_tokens
            if index == 0:
                cached = out.cached_tokens
            if run.raw and not opened[index]:  # its first output: what precedes its tokens
                opened[index] = True
                head = self._prompt_entries(run, index, out.prompt_logprobs)
                echo = run.raw[index // run.request.n].echo
                if echo or head:
                    yield chunk([ChunkChoice.model_construct(
                        index=index, delta=Delta.model_construct(content=echo),
                        prompt_logprobs=head)])
            lp = ChoiceLogprobs(content=_wire_logprobs(out.logprobs)) if want_logprobs else None
            text, call_deltas = calls[index].feed(out.text) if calls else (out.text, [])
            if text or call_deltas or (lp and out.logprobs):
                delta = Delta.model_construct(
                    content=text if text or not call_deltas else None,
                    tool_calls=call_deltas or None,
                )
                yield chunk([ChunkChoice.model_construct(index=index, delta=delta, logprobs=lp)])
            if out.finished:
                if out.metrics is not None:
                    drafted += out.metrics.spec_drafted_tokens
                    accepted += out.metrics.spec_accepted_tokens
                reason = calls[index].finish(out.finish_reason) if calls else out.finish_reason
                yield chunk(
                    [ChunkChoice(index=index, delta=Delta(), finish_reason=reason)]  # type: ignore[arg-type]
                )
        if run.request.include_usage:
            yield chunk([], final=True)


    @staticmethod
    def _prompt_entries(run: ChatRun, index: int, scored: list[TokenLogprob] | None
                        ) -> list[PromptTokenLogprob] | None:
        """Choice ``index``'s prompt logprobs, where its raw prompt asked for them."""
        if not run.raw or scored is None:
            return None
        return prompt_entries(run.raw[index // run.request.n], scored)


def _wire_logprobs(items: list[TokenLogprob]) -> list[WireTokenLogprob]:
    return [
        WireTokenLogprob(
            token=item.text.decode("utf-8", "replace"),
            logprob=item.logprob,
            bytes=list(item.text),
            top_logprobs=[
                TopLogprob(token=t.text.decode("utf-8", "replace"), logprob=t.logprob,
                           bytes=list(t.text))
                for t in item.top
            ],
        )
        for item in items
    ]


def _usage(prompt: int, completion: int, cached: int, drafted: int, accepted: int) -> Usage:
    """OpenAI's usage; speculative tokens, where any were drafted, in the fields OpenAI gives
    predicted outputs (accepted and rejected prediction tokens)."""
    usage = Usage.of(prompt, completion, cached)
    if drafted:
        usage.completion_tokens_details = CompletionTokensDetails(
            accepted_prediction_tokens=accepted, rejected_prediction_tokens=drafted - accepted)
    return usage
