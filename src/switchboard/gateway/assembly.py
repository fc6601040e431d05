"""Builds the router and one provider per deployment (by its kind's registered factory) from the
settings."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from switchboard.gateway.accounting import estimate_tokens
from switchboard.gateway.config import DeploymentConfig, gateway_config
from switchboard.gateway.providers.base import Provider
from switchboard.gateway.providers.registry import ProviderContext, provider_kind
from switchboard.gateway.router import ProviderRouter
from switchboard.gateway.telemetry import GatewayTelemetry
from switchboard.serving import ChatService, ModelCatalog
from switchboard.settings import Settings


def build_provider(config: DeploymentConfig, context: ProviderContext) -> Provider:
    return provider_kind(config.provider).factory(config, context)


def build_router(
    settings: Settings, service: ChatService, catalog: ModelCatalog, registry: CollectorRegistry
) -> ProviderRouter:
    config = gateway_config(settings)
    secrets = settings.secret_values()
    context = ProviderContext(service, secrets)
    providers = {d.id: build_provider(d, context) for d in config.deployments}

    def tokenize(text: str) -> int:
        models = catalog.list()
        if not models:
            return estimate_tokens(text)  # ~4 bytes a token
        return len(models[0].llama.tokenize(text, add_special=False))

    return ProviderRouter(config, providers, GatewayTelemetry(registry), tokenize, secrets)
