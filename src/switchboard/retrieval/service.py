"""``EmbeddingService``: the encoder, loaded in the background at start, and one worker that
encodes off the event loop. Requests that arrive while a forward pass runs are batched together
into the next one (up to ``MAX_BATCH_INPUTS`` inputs), so many small concurrent requests cost
about what one request with all their inputs costs; ONNX Runtime uses every core for each
pass."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from switchboard.retrieval.encoder import EMBEDDING_MODEL_ID, SentenceEncoder

log = logging.getLogger(__name__)

ALIASES = (EMBEDDING_MODEL_ID, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
MAX_BATCH_INPUTS = 256
MAX_REQUEST_TOKENS = 300_000  # OpenAI's limit for one embeddings request, all inputs together
INLINE_TOKENIZE_CHARS = 20_000  # longer inputs are tokenized in a worker thread

Pending = tuple[list[list[int]], "asyncio.Future[np.ndarray]"]


class EmbeddingModelLoading(RuntimeError):
    pass


class EmbeddingInputTooLarge(ValueError):
    pass


class EmbeddingService:
    model_id = EMBEDDING_MODEL_ID
    aliases = ALIASES

    def __init__(self) -> None:
        self._encoder: SentenceEncoder | None = None
        self._error: Exception | None = None
        self._loaded = asyncio.Event()
        self._pending: list[Pending] = []
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self.created = int(time.time())

    async def load(self) -> None:
        try:
            started = time.perf_counter()
            self._encoder = await asyncio.to_thread(SentenceEncoder)
            self._worker = asyncio.create_task(self._run(self._encoder), name="embeddings")
            log.info("embedding model %s ready in %.2f s", self.model_id,
                     time.perf_counter() - started)
        except Exception as exc:
            self._error = exc
            log.exception("embedding model %s failed to load", self.model_id)
        finally:
            self._loaded.set()

    async def wait_loaded(self) -> None:
        await self._loaded.wait()

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()

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
        if texts is None:
            ids = encoder.wrap(tokens or [])
        elif sum(len(t) for t in texts) > INLINE_TOKENIZE_CHARS:
            ids = await asyncio.to_thread(encoder.tokenize, texts)
        else:
            ids = encoder.tokenize(texts)
        tokens_read = sum(len(i) for i in ids)
        if tokens_read > MAX_REQUEST_TOKENS:
            raise EmbeddingInputTooLarge(
                f"the inputs hold {tokens_read:,} tokens; one request may hold "
                f"{MAX_REQUEST_TOKENS:,} (each input is cut at 256)")
        done: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._pending.append((ids, done))
        self._wake.set()
        return await done, tokens_read

    async def _run(self, encoder: SentenceEncoder) -> None:
        """Encode what is waiting, as few forward passes as the batch limit allows."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, size = [], 0
                while self._pending and (not batch or size + len(self._pending[0][0])
                                         <= MAX_BATCH_INPUTS):
                    item = self._pending.pop(0)
                    if not item[1].done():  # its client may have gone
                        batch.append(item)
                        size += len(item[0])
                if not batch:
                    continue
                try:
                    vectors = await asyncio.to_thread(
                        encoder.encode, [ids for item in batch for ids in item[0]])
                except Exception as exc:  # noqa: BLE001 - each waiting request gets it
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                start = 0
                for ids, done in batch:
                    if not done.done():
                        done.set_result(vectors[start: start + len(ids)])
                    start += len(ids)
