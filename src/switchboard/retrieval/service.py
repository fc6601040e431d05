"""``EmbeddingService``: the encoder, loaded in the background at start, and encoding off the
event loop (one forward pass at a time; BLAS uses every core for it)."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from switchboard.retrieval.encoder import EMBEDDING_MODEL_ID, SentenceEncoder

log = logging.getLogger(__name__)

ALIASES = (EMBEDDING_MODEL_ID, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


class EmbeddingModelLoading(RuntimeError):
    pass


class EmbeddingService:
    model_id = EMBEDDING_MODEL_ID
    aliases = ALIASES

    def __init__(self) -> None:
        self._encoder: SentenceEncoder | None = None
        self._error: Exception | None = None
        self._loaded = asyncio.Event()
        self.created = int(time.time())

    async def load(self) -> None:
        try:
            started = time.perf_counter()
            self._encoder = await asyncio.to_thread(SentenceEncoder)
            log.info("embedding model %s ready in %.2f s", self.model_id,
                     time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 - reported on use
            self._error = exc
            log.exception("embedding model %s failed to load", self.model_id)
        finally:
            self._loaded.set()

    async def wait_loaded(self) -> None:
        await self._loaded.wait()

    @property
    def encoder(self) -> SentenceEncoder:
        if self._encoder is None:
            raise EmbeddingModelLoading(str(self._error) if self._error else "still loading")
        return self._encoder

    def encoder_dimensions(self) -> int:
        return SentenceEncoder.dimensions

    def serves(self, name: str | None) -> bool:
        return name is None or name in self.aliases

    async def embed(self, texts: list[str] | None,
                    tokens: list[list[int]] | None) -> tuple[np.ndarray, int]:
        """Unit vectors (one row per input) and the number of tokens read."""
        encoder = self.encoder

        def run() -> tuple[np.ndarray, int]:
            ids = encoder.tokenize(texts) if texts is not None else encoder.wrap(tokens or [])
            return encoder.encode(ids), sum(len(i) for i in ids)

        return await asyncio.to_thread(run)
