"""The options every HTTP upstream deployment takes (OpenAI-compatible servers, Anthropic): where
it is, the model name it expects, the secret it sends and how, and (for OpenAI-compatible ones)
how it spells structured output. The provider modules subclass ``UpstreamDeployment``."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from switchboard.protocol.gateway_section import DeploymentConfig

# How an OpenAI-compatible upstream spells structured output (see providers/dialects.py).
Dialect = Literal["openai", "vllm", "guided", "llama.cpp"]


class UpstreamDeployment(DeploymentConfig):
    """A deployment answered by a server over HTTP."""

    takes_keys: ClassVar[bool] = True

    base_url: str | None = Field(default=None, description="The upstream's API root.")
    model: str | None = Field(default=None, description="Model name the upstream expects.")
    api_key_secret: str | None = Field(default=None, description="Name of a `secrets` entry.")
    auth: Literal["bearer", "x-api-key"] = "bearer"
    headers: dict[str, str] = Field(default_factory=dict)
    dialect: Dialect = "openai"

    def own_secret(self) -> str | None:
        return self.api_key_secret

    @model_validator(mode="after")
    def _reachable(self) -> UpstreamDeployment:
        if not self.base_url:
            raise ValueError("base_url is required")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be http(s)://…")
        self.base_url = self.base_url.rstrip("/")
        if not self.model:
            raise ValueError("model (the upstream's name) is required")
        return self
