"""Provider kinds: what a deployment's ``provider:`` names. Each kind is a pydantic model of the
deployment's options (a ``DeploymentConfig`` subclass that accepts nothing it does not know) and a
factory that builds the deployment's provider from them.

A provider module registers its kind when it is imported (``register`` at its end); the built-in
modules are listed once, in ``_load_builtins``, and imported the first time a kind is looked up.
A new provider is one module plus its name there (or, for a plugin or a test, one ``register``
call before the config is read).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from switchboard.gateway.providers.base import Provider
from switchboard.protocol.gateway_section import DeploymentConfig

if TYPE_CHECKING:
    from switchboard.serving import ChatService

@dataclass(frozen=True)
class ProviderContext:
    """What a factory may draw on besides its deployment's options."""

    service: ChatService  # the local engine's chat service
    secrets: dict[str, str] = field(default_factory=dict)  # every secret's value, by name

    def key_of(self, config: DeploymentConfig) -> str | None:
        """The value of the secret the deployment sends upstream (its ``api_key_secret``)."""
        name = config.own_secret()
        return self.secrets.get(name) if name else None


# Called with an instance of its kind's options model.
ProviderFactory = Callable[[Any, ProviderContext], Provider]


@dataclass(frozen=True)
class ProviderKind:
    kind: str
    factory: ProviderFactory
    options: type[DeploymentConfig]


class UnknownProvider(ValueError):
    """A ``provider:`` that no module registered."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"unknown provider {kind!r}; the registered kinds are: "
                         + ", ".join(kinds()))
        self.kind = kind


_kinds: dict[str, ProviderKind] = {}
_builtins_loaded = False


def register(kind: str, factory: ProviderFactory, options: type[DeploymentConfig]) -> None:
    """Make ``provider: kind`` mean deployments checked by ``options`` and built by ``factory``.
    Registering a kind twice with different parts is a programming error."""
    _load_builtins()  # a built-in kind is never replaced by accident
    entry = ProviderKind(kind, factory, options)
    known = _kinds.get(kind)
    if known is not None and known != entry:
        raise ValueError(f"provider kind {kind!r} is already registered")
    _kinds[kind] = entry


def unregister(kind: str) -> None:
    """Forget a kind (for tests that registered one of their own)."""
    _kinds.pop(kind, None)


def kinds() -> list[str]:
    """Every registered kind, sorted."""
    _load_builtins()
    return sorted(_kinds)


def provider_kind(kind: str) -> ProviderKind:
    """The registered kind, or ``UnknownProvider`` listing the registered ones."""
    _load_builtins()
    entry = _kinds.get(kind)
    if entry is None:
        raise UnknownProvider(kind)
    return entry


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    from switchboard.gateway.providers import (  # noqa: F401 - the built-in kinds register
        anthropic,
        local,
        openai_compatible,
    )
