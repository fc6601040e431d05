"""A non-streamed request whose client hangs up is charged what it used (issue 21): the runs the
local engine started for it are found through ``started_runs`` even though its task was
cancelled, and their prompt and decoded tokens are priced (they used to be 0 tokens and $0)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from switchboard.engine import StepOutput
from switchboard.gateway.accounting import RequestClock
from switchboard.gateway.config import DeploymentConfig, GatewayConfig, ModelRoute, Price
from switchboard.gateway.router import ProviderRouter
from switchboard.gateway.telemetry import GatewayTelemetry
from switchboard.pipeline.admission import prompt_estimate
from switchboard.pipeline.disconnect import until_gone
from switchboard.pipeline.settlement import cut_off
from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.serving import ChatRun
from switchboard.serving.chat import started_runs

BODY = {"model": "smol-priced", "messages": [{"role": "user", "content": "Count up."}]}
REQUEST = ChatCompletionRequest.model_validate(BODY)


def _router() -> ProviderRouter:
    config = GatewayConfig(
        deployments=[DeploymentConfig(id="smol", provider="local")],
        models=[ModelRoute(name="smol-priced", deployments=["smol"],
                           price=Price(input_per_million=1e6, output_per_million=2e6))],
    )
    return ProviderRouter(config, {"smol": object()},  # type: ignore[dict-item]
                          GatewayTelemetry(CollectorRegistry()))


def _run(prompt_tokens: int) -> ChatRun:
    request = ChatCompletionRequest.model_validate({**BODY, "model": "smol"})
    return ChatRun(model=None, request=request, prompt_tokens=prompt_tokens,  # type: ignore[arg-type]
                   queue=asyncio.Queue(), handles=[SimpleNamespace(cancel=lambda: None)])  # type: ignore[list-item]


def test_a_cut_off_local_run_is_charged_its_prompt_and_decoded_tokens() -> None:
    async def go() -> None:
        runs: list[ChatRun] = []

        async def disconnected() -> None:  # the client hangs up after 50 ms
            await asyncio.sleep(0.05)

        async def work() -> None:  # what the local provider does: start a run, read it
            run = _run(33)
            started_runs.get().append(run)  # type: ignore[union-attr]
            for n in (1, 2, 3):
                run.queue.put_nowait((0, StepOutput(completion_tokens=n)))
            async for _ in run.outputs():
                pass  # waits forever: the client hangs up first

        listed = started_runs.set(runs)
        try:
            assert await until_gone(work(), disconnected) is None
        finally:
            started_runs.reset(listed)
        runs[0].queue.put_nowait((0, StepOutput(completion_tokens=4)))  # decoded, never read
        outcome = cut_off(_router(), REQUEST, None, runs, RequestClock())
        assert outcome.status == 499 and outcome.deployment == "smol"
        assert outcome.metrics is not None
        assert (outcome.metrics["input_tokens"], outcome.metrics["output_tokens"]) == (33, 4)
        assert outcome.metrics["cost_usd"] == pytest.approx(33 + 2 * 4)
        assert "usage_estimated" not in outcome.metrics
    asyncio.run(go())


def test_a_cut_off_upstream_request_is_charged_its_estimated_prompt() -> None:
    outcome = cut_off(_router(), REQUEST, None, [], RequestClock())
    assert outcome.status == 499 and outcome.metrics is not None
    prompt = prompt_estimate(_router(), REQUEST)
    assert outcome.metrics["input_tokens"] == prompt > 0
    assert outcome.metrics["output_tokens"] == 0 and outcome.metrics["usage_estimated"]
    assert outcome.metrics["cost_usd"] == pytest.approx(prompt)
