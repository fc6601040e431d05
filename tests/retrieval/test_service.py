"""Concurrent embedding requests are batched into shared forward passes and each still gets
its own vectors, in its own order."""

from __future__ import annotations

import asyncio

import numpy as np

from switchboard.retrieval.service import EmbeddingService


def test_concurrent_requests_share_batches() -> None:
    async def go() -> None:
        service = EmbeddingService()
        await service.load()
        requests = [[f"request {i} sentence {j} about {'rivers' if j % 2 else 'mountains'}"
                     for j in range(1 + i % 3)] for i in range(24)]
        passes = 0
        encode = service.encoder.encode

        def counting(ids):  # noqa: ANN001, ANN202
            nonlocal passes
            passes += 1
            return encode(ids)

        service.encoder.encode = counting  # type: ignore[method-assign]
        results = await asyncio.gather(*(service.embed(texts, None) for texts in requests))
        assert passes < len(requests)  # batched: fewer forward passes than requests
        service.encoder.encode = encode  # type: ignore[method-assign]
        for texts, (vectors, tokens) in zip(requests, results, strict=True):
            alone = encode(service.encoder.tokenize(texts))
            assert vectors.shape == (len(texts), 384)
            assert np.allclose(vectors, alone, atol=1e-5)
            assert tokens == sum(len(i) for i in service.encoder.tokenize(texts))
        await service.close()
    asyncio.run(go())


def _counting_passes(service: EmbeddingService) -> list[int]:
    """Wraps the encoder so that each pass's input count is recorded."""
    passes: list[int] = []
    encode = service.encoder.encode

    def counting(ids):  # noqa: ANN001, ANN202
        passes.append(len(ids))
        return encode(ids)

    service.encoder.encode = counting  # type: ignore[method-assign]
    return passes


def test_a_large_request_does_not_hold_the_encoder() -> None:
    """A request of many long inputs is encoded a slice per pass, a later small request rides
    the next pass and finishes first, and the large one's vectors are those it gets alone."""
    async def go() -> None:
        service = EmbeddingService(round_tokens=512)
        await service.load()
        large = [f"document {i}: " + "the river runs past the old mill " * 12 for i in range(40)]
        alone = service.encoder.encode(service.encoder.tokenize(large))
        passes = _counting_passes(service)
        finished: list[str] = []

        async def embed(name: str, texts: list[str]) -> np.ndarray:
            vectors, _ = await service.embed(texts, None)
            finished.append(name)
            return vectors

        big = asyncio.create_task(embed("large", large))
        await asyncio.sleep(0)
        small = asyncio.create_task(embed("small", ["a short question about mills"]))
        large_vectors, small_vectors = await asyncio.gather(big, small)
        assert finished == ["small", "large"]
        assert len(passes) >= 8  # 40 inputs of ~100 tokens in passes of 512 tokens
        assert max(passes) <= 6
        assert np.allclose(large_vectors, alone, atol=1e-5)
        assert small_vectors.shape == (1, 384)
        await service.close()
    asyncio.run(go())


def test_a_request_whose_client_left_stops_being_encoded() -> None:
    async def go() -> None:
        service = EmbeddingService(round_tokens=512)
        await service.load()
        passes = _counting_passes(service)
        large = [f"chunk {i}: " + "a long line of text about harbours " * 12 for i in range(60)]
        task = asyncio.create_task(service.embed(large, None))
        while not passes:
            await asyncio.sleep(0.01)
        task.cancel()
        vectors, _ = await service.embed(["still served"], None)
        assert vectors.shape == (1, 384)
        assert sum(passes) < 20  # not the 60 inputs the request held
        await service.close()
    asyncio.run(go())
