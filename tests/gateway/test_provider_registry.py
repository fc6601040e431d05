"""Provider kinds come from the registry: a kind registered by a test (no other change) is usable
from the config file, its options are checked by its own model, and an unknown ``provider:`` or
option is refused with a message that names it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml
from prometheus_client import CollectorRegistry
from pydantic import Field, ValidationError

from switchboard.gateway.assembly import build_router
from switchboard.gateway.config import DeploymentConfig, gateway_config
from switchboard.gateway.providers.base import Call, ProviderResult
from switchboard.gateway.providers.registry import (
    ProviderContext,
    kinds,
    register,
    unregister,
)
from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.serving import ChatService, ModelCatalog
from switchboard.settings import Settings, load_settings


class EchoDeployment(DeploymentConfig):
    """The fake kind's options: a greeting, and the secret it would send."""

    takes_keys = True
    greeting: str = Field(min_length=1)
    api_key_secret: str | None = None

    def own_secret(self) -> str | None:
        return self.api_key_secret


class EchoProvider:
    def __init__(self, config: EchoDeployment, key: str | None) -> None:
        self.config, self.key = config, key

    async def complete(self, call: Call) -> ProviderResult:
        text = f"{self.config.greeting}, {call.request.messages[-1].content} (key {self.key})"
        return ProviderResult({"choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": text}}],
                               "usage": {"prompt_tokens": 2, "completion_tokens": 3}})

    async def embed(self, body: dict[str, Any], api_key: str | None) -> NoReturn:
        raise NotImplementedError

    async def stream(self, call: Call) -> NoReturn:
        raise NotImplementedError

    async def close(self) -> None:
        return None


def build_echo(config: EchoDeployment, context: ProviderContext) -> EchoProvider:
    return EchoProvider(config, context.key_of(config))


@pytest.fixture
def echo_kind() -> Iterator[None]:
    register("echo", build_echo, EchoDeployment)
    yield
    unregister("echo")


def settings_from(tmp_path: Path, config: dict[str, Any]) -> Settings:
    path = tmp_path / "switchboard.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_settings({"config": path})


ECHO = {"id": "echo-a", "provider": "echo", "greeting": "Hello", "api_key_secret": "echo-key",
        "weight": 2}
CONFIG = {"secrets": {"echo-key": "s3cret"}, "deployments": [ECHO],
          "models": [{"name": "echo-model", "deployments": ["echo-a"]}]}


@pytest.mark.usefixtures("echo_kind")
def test_a_registered_kind_is_usable_from_the_config_file(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, CONFIG)
    catalog = ModelCatalog(settings)
    assert catalog.deployments == []  # nothing local to load
    router = build_router(settings, ChatService(catalog), catalog, CollectorRegistry())
    deployment = router.deployments["echo-a"]
    assert isinstance(deployment.config, EchoDeployment) and deployment.config.weight == 2
    assert deployment.kind == "echo"
    request = ChatCompletionRequest.model_validate(
        {"model": "echo-model", "messages": [{"role": "user", "content": "world"}]})
    answer = asyncio.run(router.complete(request))
    assert answer.deployment.id == "echo-a"
    assert answer.completion["choices"][0]["message"]["content"] == "Hello, world (key s3cret)"


@pytest.mark.usefixtures("echo_kind")
def test_an_option_the_kind_does_not_take_is_named(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, {**CONFIG, "deployments": [{**ECHO, "greting": "Hi"}]})
    with pytest.raises(ValidationError) as caught:
        gateway_config(settings)
    message = str(caught.value)
    assert "deployment 'echo-a': an echo deployment takes no greting" in message
    assert "greeting" in message  # its options are listed


@pytest.mark.usefixtures("echo_kind")
def test_the_kind_checks_its_own_options(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, {**CONFIG, "deployments": [{**ECHO, "greeting": ""}]})
    with pytest.raises(ValidationError, match="deployment 'echo-a': greeting: String should"):
        gateway_config(settings)
    missing = settings_from(tmp_path, {**CONFIG, "deployments": [{**ECHO, "api_key_secret": "x"}]})
    with pytest.raises(ValidationError, match="api_key_secret 'x' is not in secrets"):
        gateway_config(missing)


def test_an_unknown_kind_lists_the_registered_ones(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, CONFIG)  # the file's shape is fine without the kind
    with pytest.raises(ValidationError) as caught:
        gateway_config(settings)
    assert ("deployment 'echo-a': unknown provider 'echo'; the registered kinds are: "
            "anthropic, local, openai-compatible") in str(caught.value)
    assert "echo" not in kinds()


def test_a_kind_cannot_be_registered_twice_differently() -> None:
    with pytest.raises(ValueError, match="'local' is already registered"):
        register("local", build_echo, EchoDeployment)
    assert "local" in kinds()
