"""Wire schemas of the admin API: API keys (create / update) and usage queries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from switchboard.protocol.durations import aware, parse_duration, parse_expiry

INT32 = 2**31 - 1  # the columns' range on every database
NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"  # no control characters (PostgreSQL refuses NUL)
MAX_JSON_DEPTH = 32  # key metadata nested deeper is refused


class ModelLimitSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rpm: int | None = Field(default=None, ge=1, le=INT32)
    tpm: int | None = Field(default=None, ge=1, le=INT32)


class KeyUpdate(BaseModel):
    """Fields to change on a key; ``null`` clears a limit."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=NAME_PATTERN)
    models: list[str] | None = Field(default=None, description="Allowed public model names.")
    rpm: int | None = Field(default=None, ge=1, le=INT32, description="Requests per minute.")
    tpm: int | None = Field(default=None, ge=1, le=INT32, description="Tokens per minute.")
    model_limits: dict[str, ModelLimitSpec] | None = Field(
        default=None, description="Per-model rpm/tpm for this key.")
    max_parallel: int | None = Field(default=None, ge=1, le=INT32,
                                     description="Requests at once.")
    budget_usd: float | None = Field(default=None, ge=0, le=1e12, description="Spend cap in USD.")
    budget_period: str | None = Field(
        default=None, description="Budget period (1h, 1d, 7d, 30d…); none = key's lifetime.")
    expires_at: datetime | None = Field(
        default=None, description="Expiry: ISO date/time, or a duration from now (30d).")
    metadata: dict[str, Any] | None = None

    @field_validator("metadata")
    @classmethod
    def _storable(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            _check_json_integers(value)
        return value

    @field_validator("budget_period")
    @classmethod
    def _period(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @field_validator("expires_at", mode="before")
    @classmethod
    def _expiry(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_expiry(value)
        return value

    @field_validator("expires_at")
    @classmethod
    def _not_past(cls, value: datetime | None) -> datetime | None:
        value = aware(value)
        if value is not None:
            try:
                value = value.astimezone(UTC)  # how it is stored
            except OverflowError as exc:
                raise ValueError("the expiry is past the last representable date") from exc
        if value is not None and value <= datetime.now(UTC):
            raise ValueError("the expiry is in the past (to end a key now, revoke it)")
        return value


def _check_json_integers(value: Any, depth: int = 0) -> None:
    """Raises ``ValueError`` for an integer past 64 bits (no database stores it in JSON) or a
    value nested deeper than ``MAX_JSON_DEPTH``."""
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"metadata is nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, bool):
        return
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise ValueError("metadata holds an integer past 64 bits (send it as a string)")
    if isinstance(value, dict):
        for item in value.values():
            _check_json_integers(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json_integers(item, depth + 1)


class KeyCreate(KeyUpdate):
    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)  # type: ignore[assignment]
