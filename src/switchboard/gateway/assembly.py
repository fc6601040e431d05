"""Builds the router and one provider per deployment from the settings."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from switchboard.gateway.accounting import estimate_tokens
from switchboard.gateway.config import DeploymentConfig
from switchboard.gateway.providers.base import Provider
from switchboard.gateway.router import ProviderRouter
from switchboard.gateway.telemetry import GatewayTelemetry
from switchboard.serving import ChatService, ModelCatalog
from switchboard.settings import Settings


def build_provider(
    config: DeploymentConfig, service: ChatService, secrets: dict[str, str]
) -> Provider:
    key = secrets.get(config.api_key_secret) if config.api_key_secret else None
    if config.provider == "local":
        from switchboard.gateway.providers.local import LocalProvider

        return LocalProvider(config, service)
    if config.provider == "anthropic":
        from switchboard.gateway.providers.anthropic import AnthropicProvider

        return AnthropicProvider(config, key)
    from switchboard.gateway.providers.openai_compatible import OpenAICompatibleProvider

    return OpenAICompatibleProvider(config, key)


def build_router(
    settings: Settings, service: ChatService, catalog: ModelCatalog, registry: CollectorRegistry
) -> ProviderRouter:
    config = settings.routing
    secrets = settings.secret_values()
    providers = {d.id: build_provider(d, service, secrets) for d in config.deployments}

    def tokenize(text: str) -> int:
        models = catalog.list()
        if not models:
            return estimate_tokens(text)  # ~4 bytes a token
        return len(models[0].llama.tokenize(text, add_special=False))

    return ProviderRouter(config, providers, GatewayTelemetry(registry), tokenize, secrets)
