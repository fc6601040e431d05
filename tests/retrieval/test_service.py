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
