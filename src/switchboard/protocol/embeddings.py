"""Wire schemas of ``POST /v1/embeddings`` (OpenAI's format)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_INPUTS = 2048  # OpenAI's limit per request

Input = str | list[str] | list[int] | list[list[int]]


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    input: Input = Field(description="A string, a list of strings, or token arrays.")
    model: str | None = Field(default=None, description="Default: the embedded all-minilm-l6-v2.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: Input) -> Input:
        if isinstance(value, list):
            if not value:
                raise ValueError("input must not be an empty list")
            if len(value) > MAX_INPUTS:
                raise ValueError(f"at most {MAX_INPUTS} inputs per request")
            if any(isinstance(v, list) and not v for v in value):
                raise ValueError("a token array must not be empty")
        return value

    def texts_or_tokens(self) -> tuple[list[str] | None, list[list[int]] | None]:
        value = self.input
        if isinstance(value, str):
            return [value], None
        if all(isinstance(v, str) for v in value):
            return list(value), None  # type: ignore[arg-type]
        if all(isinstance(v, int) for v in value):
            return None, [list(value)]  # type: ignore[arg-type]
        return None, [list(v) for v in value]  # type: ignore[union-attr]


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
