"""Between OpenAI's legacy completions and the canonical chat request and answers (pure).

A completion request becomes a ``ChatCompletionRequest`` whose ``raw_prompts`` a local model
runs verbatim (no chat template) and whose ``messages`` (the prompt as one user message) are what
an upstream that only speaks chat is sent; ``logprobs: N`` becomes ``logprobs`` with
``top_logprobs: N``; ``echo`` with logprobs asks for ``prompt_logprobs``. What cannot be sent to
an upstream (several prompts, token ids, echo, ``max_tokens`` 0) is named by
``upstream_refusal``. Answers and stream chunks go back the other way: ``text_completion``
objects with OpenAI's legacy logprobs (each position's alternatives as a dict that always holds
the chosen token, and ``text_offset`` counted in the choice's text).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.protocol.completions import SHARED_FIELDS, CompletionRequest

DROPPED_CHAT_FIELDS = frozenset(ChatCompletionRequest.model_fields) | {"max_completion_tokens"}


class UntranslatableRequest(ValueError):
    """A completion request the target cannot serve; ``param`` names the field at fault."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def to_chat_request(req: CompletionRequest) -> ChatCompletionRequest:
    """The canonical request for ``req`` (raises ``UntranslatableRequest``, or pydantic's
    ``ValidationError`` for a shared field the chat request refuses)."""
    if req.suffix:
        raise UntranslatableRequest(
            "suffix", "suffix is not supported: the models served cannot fill in the middle")
    prompts = req.prompts
    draws = max(req.n, getattr(req, "best_of", None) or req.n)
    if len(prompts) * draws > 128:
        raise UntranslatableRequest(
            "prompt", f"{len(prompts)} prompts x {draws} choices each is more than 128")
    fields = req.model_dump(include=set(SHARED_FIELDS), exclude_unset=True, by_alias=True)
    # unknown fields go on as a chat request's do (reported, forwarded upstream), unless their
    # name means something else in a chat request
    extra = {k: v for k, v in (req.model_extra or {}).items() if k not in DROPPED_CHAT_FIELDS}
    text = "\n\n".join(p for p in prompts if isinstance(p, str))
    body: dict[str, Any] = {
        **extra, **fields,
        "model": req.model,
        "messages": [{"role": "user", "content": text}],
        "n": req.n,
        "max_tokens": req.max_tokens,
        "stream": req.stream,
    }
    if req.stream_options is not None:
        body["stream_options"] = req.stream_options.model_dump(exclude_unset=True)
    if req.logprobs is not None:
        body["logprobs"] = True
        body["top_logprobs"] = req.logprobs
    if req.echo:
        body["echo"] = True
        if req.logprobs is not None:
            body["prompt_logprobs"] = req.logprobs
    if body["max_tokens"] is None:
        del body["max_tokens"]
    chat = ChatCompletionRequest.model_validate(body)
    return chat.model_copy(update={"raw_prompts": prompts})


def upstream_refusal(req: CompletionRequest) -> UntranslatableRequest | None:
    """Why ``req`` cannot go to an upstream that only speaks chat (``None``: it can)."""
    prompts = req.prompts
    if len(prompts) > 1:
        return UntranslatableRequest(
            "prompt", "an upstream model takes one prompt per request (a chat message)")
    if not isinstance(prompts[0], str):
        return UntranslatableRequest(
            "prompt", "token-id prompts are served by local models only")
    if req.echo:
        return UntranslatableRequest("echo", "echo is served by local models only")
    return None


def validation_message(exc: ValidationError) -> tuple[str | None, str]:
    """The field and message of a chat request's first validation error."""
    first = exc.errors(include_url=False)[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ())]
    param = loc[0] if loc else None
    message = str(first.get("msg", "invalid request"))
    return param, f"{'.'.join(loc)}: {message}" if loc else message


# --- answers --------------------------------------------------------------------------------

def completion_id(chat_id: str) -> str:
    return "cmpl-" + chat_id.removeprefix("chatcmpl-")


def to_completion(completion: dict[str, Any], want_logprobs: bool) -> dict[str, Any]:
    """A ``text_completion`` for a chat completion answer (its ``usage``, ``metrics`` and other
    Switchboard fields kept)."""
    choices = []
    for choice in completion.get("choices") or []:
        message = choice.get("message") or {}
        text = message.get("content") or ""
        choices.append({
            "index": choice.get("index", len(choices)),
            "text": text,
            "logprobs": _logprobs(choice, 0) if want_logprobs else None,
            "finish_reason": _finish_reason(choice.get("finish_reason")),
        })
    return _shaped(completion, choices)


class CompletionStream:
    """Chat completion chunks to ``text_completion`` chunks, keeping each choice's text offset."""

    def __init__(self, want_logprobs: bool) -> None:
        self.want_logprobs = want_logprobs
        self._offsets: dict[int, int] = {}

    def feed(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        """The completion chunk for one chat chunk (``None`` when it carries nothing: a role)."""
        choices = []
        for choice in chunk.get("choices") or []:
            index = int(choice.get("index", 0))
            text = (choice.get("delta") or {}).get("content") or ""
            reason = choice.get("finish_reason")
            logprobs = None
            if self.want_logprobs:
                logprobs = _logprobs(choice, self._offsets.get(index, 0))
                if not logprobs["tokens"] and not text:
                    logprobs = None
            if not text and reason is None and logprobs is None:
                continue
            self._offsets[index] = self._offsets.get(index, 0) + len(text)
            choices.append({"index": index, "text": text, "logprobs": logprobs,
                            "finish_reason": _finish_reason(reason)})
        if not choices and not chunk.get("usage"):
            return None
        return _shaped(chunk, choices)


def _shaped(answer: dict[str, Any], choices: list[dict[str, Any]]) -> dict[str, Any]:
    """A ``text_completion`` in OpenAI's field order, with the answer's other fields (usage,
    metrics, system_fingerprint, a retrieval report…) after its choices."""
    head = {"id": completion_id(str(answer.get("id", ""))), "object": "text_completion",
            "created": answer.get("created"), "model": answer.get("model"), "choices": choices}
    rest = {k: v for k, v in answer.items() if k not in (*head, "service_tier")}
    return {**head, **rest}


def _finish_reason(reason: Any) -> str | None:
    """A chat finish reason as a completion's (tool calls cannot happen here)."""
    if reason is None:
        return None
    return reason if reason in ("stop", "length", "content_filter") else "stop"


def _logprobs(choice: dict[str, Any], offset: int) -> dict[str, Any]:
    """OpenAI's legacy logprobs for a choice (or chunk choice): its prompt tokens' (echo) then
    its generated tokens'."""
    entries = list(choice.get("prompt_logprobs") or [])
    entries += ((choice.get("logprobs") or {}).get("content") or [])
    tokens: list[str] = []
    token_logprobs: list[float | None] = []
    top: list[dict[str, float] | None] = []
    offsets: list[int] = []
    for entry in entries:
        token, logprob = str(entry.get("token", "")), entry.get("logprob")
        tokens.append(token)
        token_logprobs.append(logprob)
        offsets.append(offset)
        offset += len(token)
        if logprob is None:
            top.append(None)
            continue
        alternatives = {str(t.get("token", "")): t.get("logprob")
                        for t in entry.get("top_logprobs") or []}
        alternatives.setdefault(token, logprob)  # the chosen token is always there (OpenAI)
        top.append(alternatives)
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top,
            "text_offset": offsets}
