"""From a chat request to what the local engine runs: capability checks and sampling parameters.

A field the local engine understands but cannot honour yet is refused by name (``Unsupported``);
nothing is silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from switchboard.engine.beam import BeamSearchParams
from switchboard.engine.request import SamplingParams
from switchboard.errors import Unsupported
from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.protocol.messages import AudioPart, FilePart, ImagePart, text_of
from switchboard.settings import Settings


def _fail(param: str, why: str) -> None:
    raise Unsupported(param, f"'{param}' is not supported by this model yet: {why}")


def check_supported(req: ChatCompletionRequest) -> None:
    """Raise ``Unsupported`` for the first field set to a value the local engine cannot honour."""
    if req.functions:
        _fail("functions", "the deprecated functions API is not served locally; pass them as "
              "'tools' (with 'tool_choice')")
    if req.function_call not in (None, "none"):
        _fail("function_call", "the deprecated functions API is not served locally; use "
              "'tools' and 'tool_choice'")
    if req.use_beam_search:
        _check_beam_search(req)
    else:
        if req.best_of is not None and req.best_of > req.n and req.stream:
            raise Unsupported("best_of", "best_of > n cannot be streamed: the best n of the "
                              "best_of samples are only known at the end")
        if req.length_penalty is not None and req.length_penalty != 1.0:
            _fail("length_penalty", "it only applies with use_beam_search")
        if req.early_stopping:
            _fail("early_stopping", "it only applies with use_beam_search")
    if req.audio is not None or (req.modalities and "audio" in req.modalities):
        _fail("audio", "this model only produces text")
    if req.prediction is not None:
        _fail("prediction", "predicted outputs are not available")
    if req.web_search_options is not None:
        _fail("web_search_options", "web search is not available")
    if req.reasoning_effort is not None:
        _fail("reasoning_effort", "this model does not reason")
    if req.verbosity is not None:
        _fail("verbosity", "this model has no verbosity control")
    if req.store:
        _fail("store", "stored completions are not available")
    if req.service_tier not in (None, "auto", "default"):
        _fail("service_tier", "only the 'default' tier exists")
    if req.api_key_ref is not None:
        _fail("api_key_ref", "provider keys only apply to upstream models")
    for i, message in enumerate(req.messages):
        content = getattr(message, "content", None)
        if isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, (ImagePart, AudioPart, FilePart)):
                    raise Unsupported(
                        f"messages[{i}].content[{j}]",
                        f"content parts of type '{part.type}' are not supported by this model",
                    )


def _check_beam_search(req: ChatCompletionRequest) -> None:
    def refuse(param: str, why: str) -> None:
        raise Unsupported(param, f"'{param}' cannot be used with use_beam_search: {why}")

    if beam_width(req) < 2:
        raise Unsupported("best_of", "use_beam_search needs best_of (the beam width) of at least 2")
    if req.temperature not in (None, 0.0):
        refuse("temperature", "beam search is deterministic; leave it unset or 0")
    if req.top_p not in (None, 1.0):
        refuse("top_p", "beam search keeps the most likely beams")
    if req.top_k not in (None, 0, -1):
        refuse("top_k", "beam search keeps the most likely beams")
    if req.min_p:
        refuse("min_p", "beam search keeps the most likely beams")
    if req.logprobs:
        refuse("logprobs", "per-token logprobs are not reported for beams")
    for name in ("frequency_penalty", "presence_penalty"):
        if getattr(req, name):
            refuse(name, "penalties are not applied to beams")
    if req.repetition_penalty not in (None, 1.0):
        refuse("repetition_penalty", "penalties are not applied to beams")


def beam_width(req: ChatCompletionRequest) -> int:
    return req.best_of or req.n


def beam_params(req: ChatCompletionRequest) -> BeamSearchParams | None:
    if not req.use_beam_search:
        return None
    return BeamSearchParams(
        width=beam_width(req),
        n=req.n,
        length_penalty=1.0 if req.length_penalty is None else req.length_penalty,
        early_stopping=req.early_stopping if req.early_stopping is not None else False,
    )


@dataclass(frozen=True)
class SamplingDefaults:
    """What a local model samples with where a request leaves a field out: llama.cpp's server
    defaults, unless the GGUF names its own (``general.sampling.*``) or the server's settings
    do (``default_temperature`` ...). A small model drawing from its whole distribution at
    temperature 1 wanders off into a string it never closes; these keep its tail out."""

    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05

    @classmethod
    def resolve(cls, settings: Settings, gguf: Mapping[str, float]) -> SamplingDefaults:
        """Settings first, then the GGUF's metadata, then llama.cpp's defaults."""
        base = cls()

        def pick(setting: float | None, key: str, default: float) -> float:
            return setting if setting is not None else gguf.get(key, default)

        return cls(
            temperature=pick(settings.default_temperature, "temp", base.temperature),
            top_p=pick(settings.default_top_p, "top_p", base.top_p),
            top_k=int(pick(settings.default_top_k, "top_k", base.top_k)),
            min_p=pick(settings.default_min_p, "min_p", base.min_p),
        )


def sampling_params(req: ChatCompletionRequest, default_max_tokens: int | None,
                    defaults: SamplingDefaults) -> SamplingParams:
    bias: dict[int, float] = {int(k): float(v) for k, v in (req.logit_bias or {}).items()}
    if req.use_beam_search:  # beams keep the most likely continuations, whatever the defaults
        defaults = SamplingDefaults(temperature=0.0, top_p=1.0, top_k=0, min_p=0.0)
    top_k = defaults.top_k if req.top_k is None else req.top_k
    return SamplingParams(
        temperature=defaults.temperature if req.temperature is None else req.temperature,
        top_p=defaults.top_p if req.top_p is None else req.top_p,
        top_k=max(top_k, 0),
        min_p=defaults.min_p if req.min_p is None else req.min_p,
        frequency_penalty=req.frequency_penalty or 0.0,
        presence_penalty=req.presence_penalty or 0.0,
        repetition_penalty=req.repetition_penalty or 1.0,
        logit_bias=bias,
        seed=req.seed,
        max_tokens=default_max_tokens if req.completion_limit is None else req.completion_limit,
        min_tokens=req.min_tokens or 0,
        stop=tuple(req.stop_list),
        stop_token_ids=tuple(req.stop_token_ids or ()),
        ignore_eos=bool(req.ignore_eos),
        include_stop_str_in_output=bool(req.include_stop_str_in_output),
        skip_special_tokens=req.skip_special_tokens is not False,
        logprobs=bool(req.logprobs),
        top_logprobs=req.top_logprobs or 0,
        cumulative_logprob=samples_to_draw(req) > req.n,
        prompt_logprobs=req.prompt_logprobs,
        stop_token_logprob=req.raw_prompts is not None,
    )


def samples_to_draw(req: ChatCompletionRequest) -> int:
    """Outputs the engine produces: ``best_of`` samples (the best ``n`` are returned), else ``n``
    (a beam search also yields ``n``)."""
    if req.use_beam_search:
        return req.n
    return max(req.best_of or req.n, req.n)


def template_messages(
    req: ChatCompletionRequest, render_call: Callable[[str, str], str] | None = None
) -> list[dict[str, Any]]:
    """Messages as plain dicts for the chat template (text content; ``developer`` → ``system``).

    With ``render_call``, an assistant's earlier tool calls are written into its content the way
    the model is taught to make them (templates without tool support would drop them).
    """
    out: list[dict[str, Any]] = []
    for message in req.messages:
        data = message.model_dump(exclude_none=True)
        data["content"] = text_of(getattr(message, "content", None))
        if data["role"] == "developer":
            data["role"] = "system"
        calls = getattr(message, "tool_calls", None)
        if calls and render_call is not None:
            data["content"] += "".join(
                render_call(c.function.name, c.function.arguments) for c in calls
            )
        out.append(data)
    return out
