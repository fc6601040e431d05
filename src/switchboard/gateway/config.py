"""The gateway's part of the config file: ``models`` → ``deployments``, ``secrets`` and prices.

Pure pydantic models, validated when the one ``Settings`` object is built, so a bad config stops
the server at start with a message that names the offending entry::

    secrets:
      vllm: {env: VLLM_API_KEY}          # or a literal string
      team-b: {env: TEAM_B_KEY, deployments: [vllm-a]}   # usable as a request's api_key_ref
    deployments:
      - id: smol                         # the embedded model (or `path: model.gguf`)
        provider: local
      - id: vllm-a
        provider: openai-compatible
        base_url: http://10.0.0.5:8000/v1
        model: meta-llama/Llama-3.1-8B-Instruct
        api_key_secret: vllm
    models:
      - name: llama-8b
        aliases: [llama]
        deployments: [vllm-a]
        fallbacks: [smollm2-135m-instruct]
        price: {input_per_million: 0.1, output_per_million: 0.2}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

ProviderKind = Literal["local", "openai-compatible", "anthropic"]
Strategy = Literal["round-robin", "least-busy", "lowest-latency"]
# How an OpenAI-compatible upstream spells structured output (see providers/dialects.py).
Dialect = Literal["openai", "vllm", "guided", "llama.cpp"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SecretSource(_Strict):
    """A secret's value, or the environment variable that holds it (resolved at start), and the
    upstream deployments a request may send it to by naming it in ``api_key_ref``.

    A deployment whose own ``api_key_secret`` it is uses it regardless; a request's
    ``api_key_ref`` reaches only the deployments listed here (or that own it), so a caller can
    never send a stored key to an upstream it was not meant for.
    """

    value: SecretStr | None = None
    env: str | None = None
    deployments: list[str] = Field(
        default_factory=list,
        description="Deployments a request's `api_key_ref` may send this secret to.",
    )

    @model_validator(mode="before")
    @classmethod
    def _literal(cls, data: object) -> object:
        return {"value": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_source(self) -> SecretSource:
        if (self.value is None) == (self.env is None):
            raise ValueError("a secret is either a value or {env: VARIABLE}")
        return self


class Price(_Strict):
    """USD per million tokens; cached input tokens default to the input price."""

    input_per_million: float = Field(default=0.0, ge=0)
    output_per_million: float = Field(default=0.0, ge=0)
    cached_input_per_million: float | None = Field(default=None, ge=0)

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> float:
        cached_price = (
            self.input_per_million
            if self.cached_input_per_million is None
            else self.cached_input_per_million
        )
        fresh = max(0, input_tokens - cached_tokens)
        total = (
            fresh * self.input_per_million
            + cached_tokens * cached_price
            + output_tokens * self.output_per_million
        )
        return round(total / 1_000_000, 10)


class DeploymentConfig(_Strict):
    """One place a model runs: the local engine, or an upstream provider."""

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._:-]+$")
    provider: ProviderKind
    # local
    path: Path | None = Field(default=None, description="GGUF file (default: embedded model).")
    reserved_sequences: int = Field(
        default=0, ge=0, description="Engine sequences kept for this deployment (dedicated)."
    )
    # upstream
    base_url: str | None = None
    model: str | None = Field(default=None, description="Model name the upstream expects.")
    api_key_secret: str | None = Field(default=None, description="Name of a `secrets` entry.")
    auth: Literal["bearer", "x-api-key"] = "bearer"
    headers: dict[str, str] = Field(default_factory=dict)
    dialect: Dialect = "openai"
    # routing
    dedicated: bool = Field(
        default=False, description="Reachable at /deployments/{id}/v1/chat/completions."
    )
    weight: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=600.0, gt=0, description="Whole request, non-streamed.")
    connect_timeout_s: float = Field(default=5.0, gt=0)
    stall_timeout_s: float = Field(
        default=60.0, gt=0, description="Longest silence before the first or between chunks."
    )
    cooldown_s: float = Field(default=30.0, ge=0)
    failures_before_cooldown: int = Field(default=3, ge=1)
    max_connections: int = Field(default=256, ge=1)
    price: Price | None = Field(default=None, description="Overrides the model's price.")

    @model_validator(mode="after")
    def _by_kind(self) -> DeploymentConfig:
        if self.provider == "local":
            if self.base_url or self.api_key_secret:
                raise ValueError(f"deployment {self.id!r}: a local deployment takes no base_url")
        else:
            if self.reserved_sequences:
                raise ValueError(f"deployment {self.id!r}: reserved_sequences is for local ones")
            if self.provider == "anthropic" and not self.base_url:
                self.base_url = "https://api.anthropic.com"
            if not self.base_url:
                raise ValueError(f"deployment {self.id!r}: base_url is required")
            if not self.base_url.startswith(("http://", "https://")):
                raise ValueError(f"deployment {self.id!r}: base_url must be http(s)://…")
            self.base_url = self.base_url.rstrip("/")
            if not self.model:
                raise ValueError(f"deployment {self.id!r}: model (the upstream's name) is required")
        return self


class ModelRoute(_Strict):
    """A public model name, the deployments that serve it and how requests are spread."""

    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    deployments: list[str] = Field(min_length=1)
    strategy: Strategy = "round-robin"
    retries: int = Field(default=2, ge=0, le=10, description="Extra attempts before fallbacks.")
    backoff_s: float = Field(default=0.25, ge=0, description="First retry delay, then doubled.")
    fallbacks: list[str] = Field(default_factory=list)
    price: Price = Field(default_factory=Price)
    owned_by: str = "switchboard"
    rpm: int | None = Field(default=None, ge=1, description="Requests/min, all keys together.")
    tpm: int | None = Field(default=None, ge=1, description="Tokens/min, all keys together.")


class GatewayConfig(_Strict):
    """Everything the router needs, cross-checked: names resolve, nothing is defined twice.

    With no deployments configured, the server's own model (``--model`` or the embedded one) is
    the one local deployment; deployments that no model lists are served under their own id.
    """

    secrets: dict[str, SecretSource] = Field(default_factory=dict)
    deployments: list[DeploymentConfig] = Field(default_factory=list)
    models: list[ModelRoute] = Field(default_factory=list)

    def with_defaults(self, model_id: str, model_path: Path | None) -> GatewayConfig:
        deployments = list(self.deployments) or [
            DeploymentConfig(id=model_id, provider="local", path=model_path)
        ]
        listed = {d for m in self.models for d in m.deployments}
        taken = {n for m in self.models for n in (m.name, *m.aliases)}
        models = list(self.models) + [
            ModelRoute(name=d.id, deployments=[d.id])
            for d in deployments
            if d.id not in listed and d.id not in taken and not d.dedicated
        ]
        return GatewayConfig(secrets=self.secrets, deployments=deployments, models=models)

    @model_validator(mode="after")
    def _cross_check(self) -> GatewayConfig:
        ids = [d.id for d in self.deployments]
        _no_duplicates("deployment id", ids)
        names = [n for m in self.models for n in (m.name, *m.aliases)]
        _no_duplicates("model name or alias", names)
        known = set(ids)
        for dep in self.deployments:
            if dep.api_key_secret and dep.api_key_secret not in self.secrets:
                raise ValueError(
                    f"deployment {dep.id!r}: api_key_secret {dep.api_key_secret!r} "
                    "is not in secrets"
                )
        _check_secret_bindings(self.secrets, {d.id: d for d in self.deployments})
        for route in self.models:
            for dep_id in route.deployments:
                if dep_id not in known:
                    raise ValueError(f"model {route.name!r}: unknown deployment {dep_id!r}")
            for fallback in route.fallbacks:
                if fallback not in names:
                    raise ValueError(f"model {route.name!r}: unknown fallback model {fallback!r}")
                if fallback in (route.name, *route.aliases):
                    raise ValueError(f"model {route.name!r}: a model cannot fall back to itself")
        return self


def _check_secret_bindings(
    secrets: dict[str, SecretSource], deployments: dict[str, DeploymentConfig]
) -> None:
    """Each secret is bound only to upstream deployments that exist."""
    for name, source in secrets.items():
        for dep_id in source.deployments:
            dep = deployments.get(dep_id)
            if dep is None:
                raise ValueError(f"secret {name!r}: unknown deployment {dep_id!r}")
            if dep.provider == "local":
                raise ValueError(
                    f"secret {name!r}: deployment {dep_id!r} is local and sends no key"
                )


def allows_key_ref(secrets: dict[str, SecretSource], name: str, dep: DeploymentConfig) -> bool:
    """Whether a request's ``api_key_ref: name`` may be sent to the upstream ``dep``."""
    source = secrets.get(name)
    if source is None or dep.provider == "local":
        return False
    return dep.api_key_secret == name or dep.id in source.deployments


def _no_duplicates(what: str, values: list[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what} {value!r} is defined twice")
        seen.add(value)
