"""LLMstudio tracker reads, from the usage ledger: ``GET /api/tracking/logs``,
``GET /api/tracking/logs/{session_id}`` and ``GET /api/tracking/session/{session_id}``.

A key sees its own requests only (the admin key, or anyone on an open server, sees all). Message
texts appear only when the server stores content (``--log-content``); otherwise ``chat_input``,
``chat_output`` and ``context`` are empty and the metadata and metrics remain.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from switchboard.governance.assembly import Governance
from switchboard.governance.keys import aware
from switchboard.http.auth import principal
from switchboard.http.body_limits import CheckedRoute
from switchboard.persistence.usage import UsageFilter

router = APIRouter(prefix="/api/tracking", tags=["llmstudio"], route_class=CheckedRoute)


async def _records(request: Request, session_id: str | None, skip: int, limit: int,
                   newest_first: bool) -> list[dict[str, Any]]:
    governance: Governance = request.app.state.governance
    who = principal(request)
    key_id = who.key_id if (who.key is not None and not who.admin) else None
    if governance.governor.ledger is not None:
        await governance.governor.ledger.flush_for_read()
    return await governance.usage.records(UsageFilter(key_id=key_id, session_id=session_id),
                                          limit, skip, newest_first)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list) and output and isinstance(output[0], dict):
        return _text(output[0].get("content"))
    return ""


def _log(row: dict[str, Any]) -> dict[str, Any]:
    content = row.get("content") or {}
    messages = content.get("messages") or []
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    return {
        "log_id": row["id"],
        "created_at": aware(row["created_at"]).isoformat(),  # type: ignore[union-attr]
        "session_id": row["session_id"],
        "chat_input": _text(last_user.get("content")),
        "chat_output": _output_text(content.get("output")),
        "context": messages,
        "provider": row["provider"],
        "model": row["model"],
        "deployment": row["deployment"],
        "parameters": row["parameters"] or {},
        "metrics": row["metrics"] or {},
        "request_id": row["request_id"],
        "status": row["status"],
        "error": row["error"],
    }


@router.get("/logs", summary="Logged requests, newest first")
async def logs(request: Request, skip: int = Query(0, ge=0),
               limit: int = Query(1000, ge=1, le=10_000)) -> list[dict[str, Any]]:
    return [_log(r) for r in await _records(request, None, skip, limit, True)]


@router.get("/logs/{session_id}", summary="Logged requests of one session, newest first")
async def session_logs(session_id: str, request: Request, skip: int = Query(0, ge=0),
                       limit: int = Query(1000, ge=1, le=10_000)) -> list[dict[str, Any]]:
    return [_log(r) for r in await _records(request, session_id, skip, limit, True)]


@router.get("/session/{session_id}", summary="A session's history, oldest first")
async def session(session_id: str, request: Request) -> list[dict[str, Any]]:
    """One entry per request: its messages and the answer (when content is stored)."""
    entries = []
    for row in await _records(request, session_id, 0, 10_000, False):
        log = _log(row)
        history = list(log["context"])
        if log["chat_output"]:
            history.append({"role": "assistant", "content": log["chat_output"]})
        entries.append({
            "message_id": row["id"],
            "session_id": session_id,
            "chat_history": history,
            "extras": {"model": row["model"], "deployment": row["deployment"],
                       "status": row["status"], "metrics": row["metrics"] or {}},
            "created_at": log["created_at"],
            "updated_at": log["created_at"],
        })
    return entries
