"""A seeded (or greedy) request samples the same tokens when its prompt comes from the prefix
cache or others' cells fill the KV cache, in one unified pool of cells or a stream per sequence.

In a unified pool it holds with flash attention on: llama.cpp's attention then skips other
sequences' cells exactly, and the engine gives each prompt chunk its own forward pass. With a
stream per sequence it holds without flash attention too, because the engine feeds a prompt's
last token alone (without flash attention a token's numbers depend on how many rows its pass
reads; with it, they do not). There, prompts read together in one pass also give the tokens
each gives read alone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest

from switchboard.engine import (
    Engine,
    EngineConfig,
    GenerationRequest,
    LlamaModel,
    SamplingParams,
    StepOutput,
)
from switchboard.engine.embedded import embedded_model_path
from switchboard.engine.weights import prepare_weights


@pytest.fixture(scope="module", params=[
    "unified, flash attention", "streams, flash attention", "streams"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Engine]:
    path = prepare_weights(
        embedded_model_path(), "q8_0", tmp_path_factory.mktemp("weights"), threads=2
    )
    streams = request.param.startswith("streams")
    config = EngineConfig(max_sequences=8, max_queue=32, cache_slots=8, kv_streams=streams)
    model = LlamaModel(path, n_ctx=4096, n_seq_max=config.sequence_ids, n_threads=2,
                       flash_attn="flash" in request.param, unified_kv=not streams)
    eng = Engine(model, config)
    yield eng
    eng.shutdown()


def submit(engine: Engine, text: str, **params: object) -> tuple[threading.Event, list[StepOutput]]:
    outputs: list[StepOutput] = []
    done = threading.Event()

    def sink(out: StepOutput) -> None:
        outputs.append(out)
        if out.finished:
            done.set()

    tokens = engine.model.tokenize(
        f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
    )
    engine.submit(GenerationRequest(tuple(tokens), SamplingParams(**params)), sink)  # type: ignore[arg-type]
    return done, outputs


def text_of(outputs: list[StepOutput]) -> str:
    return "".join(o.text for o in outputs)


@pytest.mark.parametrize("params", [
    {"temperature": 0.9, "seed": 42, "max_tokens": 40, "ignore_eos": True},
    {"temperature": 0.0, "max_tokens": 40, "ignore_eos": True},
])
def test_same_output_after_other_traffic_and_from_the_prefix_cache(
    engine: Engine, params: dict
) -> None:
    # Long enough that a stream per sequence copies it (MIN_STREAM_COPY) rather than rereads it.
    question = ("Write a poem about the sea, the harbour at dawn, the gulls over the fishing "
                "boats and the old lighthouse keeper who watches them come home.")
    done, first = submit(engine, question, **params)
    assert done.wait(60)
    for i, topic in enumerate(["cats", "rain", "stars"]):  # leave others' cells in the cache
        other_done, _ = submit(engine, f"Tell me fact {i} about {topic}.", max_tokens=20 + i)
        assert other_done.wait(60)
    assert engine.stats()["cached"] >= 3
    done, again = submit(engine, question, **params)
    assert done.wait(60)
    assert again[-1].cached_tokens > 0  # the prompt came from the cache this time
    assert text_of(again) == text_of(first)


# Not in a unified pool: concurrent decodes there can shift tokens (README, Fidelity).
@pytest.mark.parametrize("engine", ["streams, flash attention", "streams"], indirect=True)
def test_same_output_when_its_prompt_is_read_in_one_pass_with_others(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = {"temperature": 0.8, "seed": 7, "max_tokens": 30, "ignore_eos": True}
    question = "Name three rivers of Europe and say which sea each of them flows into."
    done, alone = submit(engine, question, **params)
    assert done.wait(60)
    for i in range(10):  # push its cells out of the prefix cache (sharing no prefix with it)
        evict = threading.Event()
        tokens = engine.model.tokenize(f"{i} spelled out is", add_special=False)
        engine.submit(GenerationRequest(tuple(tokens), SamplingParams(max_tokens=1)),
                      lambda out, e=evict: out.finished and e.set())
        assert evict.wait(60)
    # Arriving together while another sequence decodes, the prompts are admitted in one step
    # and read in one forward pass: the most prompts any pass read is recorded.
    decode = engine.model.decode
    prompts_in_a_pass = [0]

    def counting(tokens: np.ndarray, positions: np.ndarray, seq_ids: np.ndarray,
                 want: np.ndarray) -> np.ndarray:
        counts = np.unique(seq_ids, return_counts=True)[1]
        prompts_in_a_pass[0] = max(prompts_in_a_pass[0], int(np.sum(counts > 1)))
        return decode(tokens, positions, seq_ids, want)

    monkeypatch.setattr(engine.model, "decode", counting)
    busy, _ = submit(engine, "Count slowly from one to fifty.", max_tokens=60, ignore_eos=True)
    batch = [submit(engine, f"Describe the colour {c} to someone who has never seen it.",
                    max_tokens=20) for c in ("red", "blue", "green")]
    done, together = submit(engine, question, **params)
    assert all(d.wait(60) for d, _ in [*batch, (done, together), (busy, None)])
    assert together[-1].cached_tokens < 10  # read again, not taken from the cache
    assert prompts_in_a_pass[0] >= 2  # one prompt per pass would give 1
    assert text_of(together) == text_of(alone)
