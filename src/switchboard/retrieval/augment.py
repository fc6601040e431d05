"""The ``retrieval`` tool in chat (Telnyx): ``tools: [{"type": "retrieval", "retrieval":
{"bucket_ids": [...], "max_num_results": N}}]``.

Before the request is routed (so it works for local and upstream models alike), the named buckets
are searched with the conversation's last user message; the closest chunks go into the system
message with numbered source markers, the retrieval tools leave the request, and the chunks used
are reported back (``retrieval`` on the response, and on a stream's final chunk).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.protocol.messages import RetrievalTool, last_user_text
from switchboard.retrieval.buckets import BucketService, Caller

DEFAULT_RESULTS = 3
INSTRUCTIONS = ("Use the following excerpts from the user's documents to answer. Cite the "
                "excerpts you use by their number, like [1].")


@dataclass
class Retrieval:
    """What a request's retrieval tools found."""

    chunks: list[dict[str, Any]] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {"chunks": self.chunks}


def retrieval_tools(request: ChatCompletionRequest) -> list[RetrievalTool]:
    return [t for t in request.tools or [] if isinstance(t, RetrievalTool)]


async def augment(
    service: BucketService, principal: Caller, request: ChatCompletionRequest,
) -> tuple[ChatCompletionRequest, Retrieval]:
    """The request with the found chunks in its system message and without retrieval tools.
    Raises ``BucketNotFound`` for a bucket the caller does not have."""
    tools = retrieval_tools(request)
    raw = request.wire()
    query = last_user_text(raw.get("messages") or [])
    hits: dict[int, dict[str, Any]] = {}
    for tool in tools:
        names = tool.retrieval.bucket_ids
        k = tool.retrieval.max_num_results or DEFAULT_RESULTS
        if not query:
            for name in names:  # unknown buckets are still an error
                await service.find(principal, name)
            continue
        for hit in await service.search(principal, names, query, k):
            hits.setdefault(hit["id"], hit)
    ranked = sorted(hits.values(), key=lambda h: h["distance"])
    retrieval = Retrieval([{
        "index": n, "bucket": h["bucket"], "filename": h["filename"],
        "chunk_position": h["position"], "distance": round(h["distance"], 6),
        "text": h["text"],
    } for n, h in enumerate(ranked, start=1)])
    body = {**raw, "messages": _with_context(raw.get("messages") or [], retrieval)}
    remaining = [t for t in raw.get("tools") or [] if t.get("type") != "retrieval"]
    if remaining:
        body["tools"] = remaining
    else:
        body.pop("tools", None)
        body.pop("tool_choice", None)
    return ChatCompletionRequest.model_validate(body), retrieval


def _with_context(messages: list[dict[str, Any]], retrieval: Retrieval) -> list[dict[str, Any]]:
    if not retrieval.chunks:
        return messages
    excerpts = "\n\n".join(
        f"[{c['index']}] ({c['bucket']}/{c['filename']}, part {c['chunk_position'] + 1})\n"
        f"{c['text']}" for c in retrieval.chunks)
    context = f"{INSTRUCTIONS}\n\n{excerpts}"
    if messages and messages[0].get("role") in ("system", "developer") and isinstance(
            messages[0].get("content"), str):
        first = {**messages[0], "content": f"{messages[0]['content']}\n\n{context}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": context}, *messages]
