"""Sampling defaults for local models: what a request that leaves out temperature, top_p, top_k
or min_p samples with (settings, then the GGUF's ``general.sampling.*``, then llama.cpp's)."""

from __future__ import annotations

import httpx

from switchboard.protocol.chat import ChatCompletionRequest
from switchboard.serving.params import SamplingDefaults, sampling_params
from switchboard.settings import Settings
from tests.conftest import API_KEY, RunningServer

LLAMA_CPP = SamplingDefaults(temperature=0.8, top_p=0.95, top_k=40, min_p=0.05)


def request(**fields: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields})


def test_llama_cpp_defaults_when_neither_settings_nor_gguf_name_one() -> None:
    assert SamplingDefaults.resolve(Settings(), {}) == LLAMA_CPP


def test_settings_override_the_gguf_which_overrides_llama_cpp() -> None:
    gguf = {"temp": 0.6, "top_k": 20.0, "top_p": 0.8}
    resolved = SamplingDefaults.resolve(Settings(default_temperature=1.0), gguf)
    assert resolved == SamplingDefaults(temperature=1.0, top_p=0.8, top_k=20, min_p=0.05)


def test_a_request_keeps_what_it_sets_and_gets_the_defaults_for_the_rest() -> None:
    params = sampling_params(request(temperature=1.0, top_k=-1), None, LLAMA_CPP)
    assert (params.temperature, params.top_k, params.top_p, params.min_p) == (1.0, 0, 0.95, 0.05)
    params = sampling_params(request(min_p=0.0, top_p=1.0), None, LLAMA_CPP)
    assert (params.temperature, params.top_k, params.top_p, params.min_p) == (0.8, 40, 1.0, 0.0)


def test_beam_search_ignores_the_defaults() -> None:
    params = sampling_params(request(use_beam_search=True, best_of=2), None, LLAMA_CPP)
    assert params.greedy and (params.top_p, params.top_k, params.min_p) == (1.0, 0, 0.0)


def test_an_omitted_field_samples_as_the_default_would(server: RunningServer) -> None:
    """Over 6 seeds a request without sampling fields gives exactly the text of one that spells
    out llama.cpp's defaults, and not always that of one at temperature 1 without cut-offs."""

    def text(seed: int, **fields: object) -> str:
        body = {"model": "smollm2-135m-instruct", "seed": seed, "max_tokens": 24,
                "messages": [{"role": "user", "content": "Name a colour and a fruit."}], **fields}
        reply = httpx.post(f"{server.v1}/chat/completions", json=body, timeout=120,
                           headers={"Authorization": f"Bearer {API_KEY}"})
        return reply.raise_for_status().json()["choices"][0]["message"]["content"]

    spelled = {"temperature": 0.8, "top_p": 0.95, "top_k": 40, "min_p": 0.05}
    full = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0}
    seeds = range(6)
    omitted = [text(s) for s in seeds]
    assert omitted == [text(s, **spelled) for s in seeds]
    assert omitted != [text(s, **full) for s in seeds]
