"""The gateway's config: the file's gateway section with every deployment checked by its provider
kind's own options model (``providers.registry``), and the checks that need kinds: a deployment's
``api_key_secret`` exists, and a secret is bound only to deployments that send keys upstream.

The section's shape (secrets, prices, model routes, the fields every deployment takes) lives low,
in ``switchboard.protocol.gateway_section``, so that ``Settings`` can hold it; it is re-exported
here. ``gateway_config(settings)`` is the checked config the router is built from; a mistake
raises ``pydantic.ValidationError`` naming the deployment and the field.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator, model_validator

from switchboard.gateway.providers.registry import UnknownProvider, provider_kind
from switchboard.protocol.gateway_section import (
    DeploymentConfig,
    DeploymentEntry,
    GatewaySection,
    ModelRoute,
    Price,
    SecretSource,
    Strategy,
    deployment_as,
)
from switchboard.settings import Settings

__all__ = [
    "DeploymentConfig",
    "DeploymentEntry",
    "GatewayConfig",
    "ModelRoute",
    "Price",
    "SecretSource",
    "Strategy",
    "allows_key_ref",
    "gateway_config",
]


class GatewayConfig(GatewaySection):
    """The gateway section with each deployment an instance of its kind's options model."""

    deployments: list[DeploymentConfig] = Field(default_factory=list)  # type: ignore[assignment]

    @field_validator("deployments", mode="before")
    @classmethod
    def _by_kind(cls, value: object) -> object:
        return [_of_its_kind(item) for item in value] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _keys(self) -> GatewayConfig:
        for dep in self.deployments:
            secret = dep.own_secret()
            if secret and secret not in self.secrets:
                raise ValueError(
                    f"deployment {dep.id!r}: api_key_secret {secret!r} is not in secrets"
                )
        by_id = {d.id: d for d in self.deployments}
        for name, source in self.secrets.items():
            for dep_id in source.deployments:
                dep = by_id.get(dep_id)
                if dep is not None and not dep.takes_keys:
                    raise ValueError(
                        f"secret {name!r}: deployment {dep_id!r} is {dep.provider} "
                        "and sends no key"
                    )
        return self


def _of_its_kind(item: object) -> object:
    """One deployment (a mapping, or a model of the section) as its kind's options model."""
    if isinstance(item, BaseModel):
        data = item.model_dump(exclude_unset=True)
    elif isinstance(item, dict):
        data = item
    else:
        return item  # not a deployment at all: pydantic says so
    provider = data.get("provider")
    if not isinstance(provider, str):
        return item
    try:
        kind = provider_kind(provider)
    except UnknownProvider as exc:
        raise ValueError(f"deployment {data.get('id', '?')!r}: {exc}") from None
    if isinstance(item, kind.options):
        return item
    return deployment_as(kind.options, data)


def gateway_config(settings: Settings) -> GatewayConfig:
    """The settings' gateway section (with the server's own model when none is configured),
    every deployment checked by its kind."""
    section = settings.routing
    return GatewayConfig(
        secrets=section.secrets, deployments=list(section.deployments), models=section.models
    )


def allows_key_ref(secrets: dict[str, SecretSource], name: str, dep: DeploymentConfig) -> bool:
    """Whether a request's ``api_key_ref: name`` may be sent to the upstream ``dep``."""
    source = secrets.get(name)
    if source is None or not dep.takes_keys:
        return False
    return dep.own_secret() == name or dep.id in source.deployments
