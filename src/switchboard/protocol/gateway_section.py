"""The config file's gateway section (``secrets``, ``deployments``, ``models``) as pure pydantic
models, low enough that ``Settings`` can hold it and every layer can read it.

What a deployment takes besides the fields common to all (``id``, ``provider``, routing, timeouts,
price) depends on its provider kind, and each kind declares those options itself (a subclass of
``DeploymentConfig``, registered by the gateway). Here a deployment is a ``DeploymentEntry``: the
common fields checked, its kind's options kept as they were written until the kind's model checks
them (``DeploymentEntry.as_kind``). The section's own cross-checks (names resolve, nothing is
defined twice) need no kind and run as soon as the settings are read::

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
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

Strategy = Literal["round-robin", "least-busy", "lowest-latency"]
LOCAL_KIND = "local"  # the kind that runs on this server's own engine
Kind = TypeVar("Kind", bound="DeploymentConfig")


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
    """One place a model runs: the fields every provider kind takes. A kind's own options model
    subclasses it (nothing unknown is accepted), and says whether it sends a key upstream."""

    takes_keys: ClassVar[bool] = False  # whether a secret may be sent to it (api_key_ref)

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._:-]+$")
    provider: str = Field(min_length=1, description="The provider kind (local, anthropic, …).")
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

    def own_secret(self) -> str | None:
        """The ``secrets`` entry this deployment always sends (none for kinds without keys)."""
        return None


class DeploymentEntry(DeploymentConfig):
    """A deployment as the file gives it: the common fields checked, the kind's options kept
    as written (``model_extra``) until ``as_kind`` checks them against the kind's model."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def as_kind(self, kind: type[Kind]) -> Kind:
        """This deployment checked by its kind's options model. ``ValueError`` names the
        deployment and each offending field (an option the kind does not take, by its name)."""
        return deployment_as(kind, self.model_dump(exclude_unset=True))


def deployment_as(kind: type[Kind], data: dict[str, Any]) -> Kind:
    """``data`` (one deployment's fields) validated by ``kind``; errors become one
    ``ValueError`` that names the deployment and each field."""
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        raise ValueError(_named(data, exc, kind)) from None


def _named(data: dict[str, Any], exc: ValidationError, kind: type[DeploymentConfig]) -> str:
    dep_id, provider = data.get("id", "?"), str(data.get("provider", "?"))
    article = "an" if provider[:1] in tuple("aeiou") else "a"
    options = ", ".join(sorted(set(kind.model_fields) - {"id", "provider"}))
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            problems.append(f"{article} {provider} deployment takes no {field} "
                            f"(its options: {options})")
        elif field:
            problems.append(f"{field}: {error['msg']}")
        else:
            problems.append(str(error["msg"]).removeprefix("Value error, "))
    return f"deployment {dep_id!r}: " + "; ".join(problems)


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


class GatewaySection(_Strict):
    """The gateway section, cross-checked: names resolve, nothing is defined twice.

    With no deployments configured, the server's own model (``--model`` or the embedded one) is
    the one local deployment; deployments that no model lists are served under their own id.
    """

    secrets: dict[str, SecretSource] = Field(default_factory=dict)
    deployments: list[DeploymentEntry] = Field(default_factory=list)
    models: list[ModelRoute] = Field(default_factory=list)

    def with_defaults(self, model_id: str, model_path: Path | None) -> GatewaySection:
        deployments: list[DeploymentConfig] = list(self.deployments) or [
            DeploymentEntry(id=model_id, provider=LOCAL_KIND, path=model_path)
        ]
        listed = {d for m in self.models for d in m.deployments}
        taken = {n for m in self.models for n in (m.name, *m.aliases)}
        models = list(self.models) + [
            ModelRoute(name=d.id, deployments=[d.id])
            for d in deployments
            if d.id not in listed and d.id not in taken and not d.dedicated
        ]
        return type(self)(secrets=self.secrets, deployments=deployments, models=models)

    @model_validator(mode="after")
    def _cross_check(self) -> GatewaySection:
        ids = [d.id for d in self.deployments]
        no_duplicates("deployment id", ids)
        names = [n for m in self.models for n in (m.name, *m.aliases)]
        no_duplicates("model name or alias", names)
        known = set(ids)
        for name, source in self.secrets.items():
            for dep_id in source.deployments:
                if dep_id not in known:
                    raise ValueError(f"secret {name!r}: unknown deployment {dep_id!r}")
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


def no_duplicates(what: str, values: list[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what} {value!r} is defined twice")
        seen.add(value)
