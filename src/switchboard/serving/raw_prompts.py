"""Raw prompts (the completions API) on a local model: verbatim text or token ids, no template.

A request whose ``raw_prompts`` is set runs each prompt as it is: a string is tokenized as
llama.cpp tokenizes a raw completion (the BOS the vocabulary asks for, special-token text read as
the special token), token ids are taken as they are. Each prompt gives the request's n choices,
numbered ``prompt_index * n + i``. With ``echo`` a choice's text begins with its prompt (token
ids are spelled out, special tokens included); with ``prompt_logprobs`` it carries each prompt
token's logprob in its context (the first token's is null). ``echo`` and ``prompt_logprobs``
are refused on a chat (messages) request.
"""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.engine.prompt_tokens import tokenize_prompt
from switchboard.engine.request import PromptTooLong, TokenLogprob
from switchboard.errors import Unsupported
from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.protocol.responses import PromptTokenLogprob, TopLogprob
from switchboard.serving.catalog import LocalModel


@dataclass(frozen=True)
class RawPrompt:
    tokens: tuple[int, ...]
    echo: str  # what a choice's text starts with ("" without echo)
    first: PromptTokenLogprob  # the first token's entry in prompt_logprobs (no logprob)


def check_raw_prompt_fields(req: ChatCompletionRequest) -> None:
    """Refuse what only a raw prompt can have, on a chat request, and what a raw prompt cannot."""
    if req.raw_prompts is None:
        for name in ("echo", "prompt_logprobs"):
            if getattr(req, name) not in (None, False):
                raise Unsupported(name, f"'{name}' is served for raw prompts: send the prompt "
                                  "to /v1/completions")
        return
    if req.tools:
        raise Unsupported("tools", "tools need a chat request (/v1/chat/completions)")
    if req.use_beam_search and len(req.raw_prompts) > 1:
        raise Unsupported("prompt", "beam search takes one prompt per request")
    if req.use_beam_search and req.prompt_logprobs is not None:
        raise Unsupported("logprobs", "'echo' with 'logprobs' cannot be used with "
                          "use_beam_search")


def prepare_raw_prompts(req: ChatCompletionRequest, model: LocalModel) -> tuple[RawPrompt, ...]:
    """Each prompt's tokens, echo text and first entry (CPU-bound, for a worker thread)."""
    llama = model.llama
    prompts = []
    for prompt in req.raw_prompts or ():
        if isinstance(prompt, str):
            tokens = tuple(tokenize_prompt(llama, prompt, limit=model.context_length))
        else:
            tokens = tuple(prompt)
            if len(tokens) >= model.context_length:
                raise PromptTooLong(len(tokens), model.context_length)
            outside = next((t for t in tokens if not 0 <= t < llama.n_vocab), None)
            if outside is not None:
                raise Unsupported("prompt", f"token id {outside} is outside the vocabulary")
        if not tokens:
            raise Unsupported("prompt", "the prompt is empty (it has no tokens)")
        echo = ""
        if req.echo:
            echo = prompt if isinstance(prompt, str) else spell(model, tokens)
        first = llama.piece(tokens[0], special=True)
        prompts.append(RawPrompt(tokens, echo, PromptTokenLogprob(
            token=first.decode("utf-8", "replace"), logprob=None, bytes=list(first),
            top_logprobs=[])))
    return tuple(prompts)


def spell(model: LocalModel, tokens: tuple[int, ...] | list[int]) -> str:
    """The text of ``tokens``, special tokens written out."""
    return b"".join(model.llama.piece(t, special=True) for t in tokens).decode("utf-8", "replace")


def prompt_entries(prompt: RawPrompt, scored: list[TokenLogprob]) -> list[PromptTokenLogprob]:
    """A choice's ``prompt_logprobs``: the first token's entry, then the engine's."""
    return [prompt.first, *(
        PromptTokenLogprob(
            token=item.text.decode("utf-8", "replace"), logprob=item.logprob,
            bytes=list(item.text),
            top_logprobs=[TopLogprob(token=t.text.decode("utf-8", "replace"), logprob=t.logprob,
                                     bytes=list(t.text)) for t in item.top])
        for item in scored)]
