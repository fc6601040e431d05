"""The admin API (admin key only): ``/admin/keys`` to create, list, read, change and revoke API
keys, and ``/admin/usage`` to read the ledger (filtered, grouped, or as CSV)."""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from switchboard.governance.assembly import Governance
from switchboard.governance.keys import ApiKey, aware
from switchboard.governance.registry import KeyNotFound, KeyRegistry
from switchboard.http.body_limits import CheckedRoute
from switchboard.http.errors import APIError
from switchboard.http.openapi import content_response, error_responses
from switchboard.persistence.usage import GROUP_COLUMNS, UsageFilter
from switchboard.protocol.admin import KeyCreate, KeyUpdate

router = APIRouter(prefix="/admin", tags=["admin"], route_class=CheckedRoute)
RECORD_FIELDS = ("id", "request_id", "created_at", "key_id", "session_id", "endpoint", "model",
                 "deployment", "provider", "stream", "status", "error", "input_tokens",
                 "output_tokens", "cached_tokens", "cost_usd", "latency_s", "ttft_s")


def _registry(request: Request) -> KeyRegistry:
    governance: Governance = request.app.state.governance
    return governance.registry


async def _key(key_id: str, action: Awaitable[ApiKey]) -> dict[str, Any]:
    """The key an action returns, public fields only; 404 when there is no such key."""
    try:
        key = await action
    except KeyNotFound as exc:
        raise APIError(404, f"no API key {key_id!r}", type="not_found_error",
                       code="key_not_found") from exc
    return key.public()


@router.post("/keys", status_code=201, summary="Create an API key (its secret is shown once)",
             responses=error_responses(400))
async def create_key(spec: KeyCreate, request: Request) -> JSONResponse:
    key, secret = await _registry(request).create(spec.model_dump(exclude_unset=True))
    return JSONResponse({**key.public(), "key": secret}, status_code=201)


@router.get("/keys", summary="List API keys")
async def list_keys(request: Request, include_revoked: bool = False) -> dict[str, Any]:
    keys = await _registry(request).list(include_revoked)
    return {"object": "list", "data": [k.public() for k in keys]}


@router.get("/keys/{key_id}", summary="Read an API key (by id or prefix)",
            responses=error_responses(404))
async def get_key(key_id: str, request: Request) -> dict[str, Any]:
    return await _key(key_id, _registry(request).get(key_id))


@router.patch("/keys/{key_id}", summary="Change an API key's name, models or limits",
              responses=error_responses(400, 404))
async def update_key(key_id: str, spec: KeyUpdate, request: Request) -> dict[str, Any]:
    values = spec.model_dump(exclude_unset=True)
    return await _key(key_id, _registry(request).update(key_id, values))


@router.delete("/keys/{key_id}", summary="Revoke an API key", responses=error_responses(404))
async def revoke_key(key_id: str, request: Request) -> dict[str, Any]:
    return await _key(key_id, _registry(request).revoke(key_id))


@router.get("/usage", summary="Usage from the ledger: records, or totals grouped by key/model/day",
            responses={**content_response("text/csv", "The records or totals, as JSON or "
                                          "(`format=csv`) CSV"), **error_responses(400)})
async def usage(
    request: Request,
    key_id: str | None = None,
    model: str | None = None,
    session_id: str | None = None,
    start: datetime | None = Query(default=None, description="From (ISO time, inclusive)."),
    end: datetime | None = Query(default=None, description="Until (ISO time, exclusive)."),
    group_by: str | None = Query(
        default=None, description="Comma-separated: key, model, day, deployment, session."),
    format: Literal["json", "csv"] = "json",
    limit: int = Query(default=1000, ge=1, le=100_000),
    offset: int = Query(default=0, ge=0),
) -> Response:
    governance: Governance = request.app.state.governance
    groups = [g.strip() for g in group_by.split(",") if g.strip()] if group_by else []
    unknown = [g for g in groups if g not in GROUP_COLUMNS]
    if unknown:
        raise APIError(400, f"cannot group by {', '.join(unknown)}; choose from "
                       f"{', '.join(GROUP_COLUMNS)}", param="group_by")
    where = UsageFilter(key_id, model, session_id, aware(start), aware(end))
    if governance.governor.ledger is not None:
        await governance.governor.ledger.flush_for_read()  # this replica's own writes
    if groups:
        rows = await governance.usage.summary(where, groups)  # type: ignore[arg-type]
        columns = [*groups, "requests", "errors", "input_tokens", "output_tokens", "cost_usd",
                   "mean_latency_s", "mean_ttft_s"]
    else:
        rows = await governance.usage.records(where, limit, offset)
        rows = [{f: r[f] for f in RECORD_FIELDS} for r in rows]
        columns = list(RECORD_FIELDS)
    for row in rows:
        if isinstance(row.get("created_at"), datetime):
            row["created_at"] = aware(row["created_at"]).isoformat()  # type: ignore[union-attr]
    if format == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        return Response(out.getvalue(), media_type="text/csv",
                        headers={"content-disposition": 'attachment; filename="usage.csv"'})
    return JSONResponse({"object": "list", "group_by": groups, "data": rows})
