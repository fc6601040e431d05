"""``EmbeddingService``: the encoder, loaded in the background at start, and one worker that
encodes off the event loop in rounds of at most ``ROUND_TOKENS`` tokens and ``MAX_ROUND_INPUTS``
inputs, each made of the next inputs of every waiting request, an equal share each, taken in
turn: many small concurrent requests share a round (costing about what one request with all
their inputs costs), and a request of thousands of long inputs neither holds the encoder until it
is done (a small request waits at most one round) nor keeps it busy once its client has gone.
ONNX Runtime uses every core for each round's forward passes."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from switchboard.retrieval.encoder import EMBEDDING_MODEL_ID, WIDTH, SentenceEncoder

log = logging.getLogger(__name__)

ALIASES = (EMBEDDING_MODEL_ID, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
MAX_ROUND_INPUTS = 256  # inputs in one round
ROUND_TOKENS = 4_096  # tokens in one round: the most a small request waits behind
MAX_REQUEST_TOKENS = 300_000  # OpenAI's limit for one embeddings request, all inputs together
INLINE_TOKENIZE_CHARS = 20_000  # longer inputs are tokenized in a worker thread


@dataclass(eq=False)
class _Job:
    """One request's inputs, the vectors made so far and the next input to encode."""
    ids: list[list[int]]
    done: asyncio.Future[np.ndarray]
    vectors: np.ndarray = field(init=False)
    next: int = 0

    def __post_init__(self) -> None:
        self.vectors = np.empty((len(self.ids), WIDTH), dtype=np.float32)


class EmbeddingModelLoading(RuntimeError):
    pass


class EmbeddingInputTooLarge(ValueError):
    pass


class EmbeddingService:
    model_id = EMBEDDING_MODEL_ID
    aliases = ALIASES

    def __init__(self, round_tokens: int = ROUND_TOKENS) -> None:
        self._encoder: SentenceEncoder | None = None
        self._error: Exception | None = None
        self._loaded = asyncio.Event()
        self.round_tokens = round_tokens
        self._jobs: list[_Job] = []  # in the order they are served next
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
        if not ids:
            return np.empty((0, WIDTH), dtype=np.float32), 0
        job = _Job(ids, asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self._wake.set()
        return await job.done, tokens_read

    async def _run(self, encoder: SentenceEncoder) -> None:
        """Encode what is waiting, a round at a time, until nothing is."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._jobs:
                self._jobs = [job for job in self._jobs if not job.done.done()]  # clients gone
                slices = self._next_round()
                if not slices:
                    continue
                try:
                    vectors = await asyncio.to_thread(
                        encoder.encode, [ids for job, a, b in slices for ids in job.ids[a:b]])
                except Exception as exc:  # noqa: BLE001 - each request in the round gets it
                    for job, _, _ in slices:
                        if not job.done.done():
                            job.done.set_exception(exc)
                    continue
                row = 0
                for job, a, b in slices:
                    job.vectors[a:b] = vectors[row: row + b - a]
                    row += b - a
                    job.next = b
                    if b == len(job.ids) and not job.done.done():
                        job.done.set_result(job.vectors)
                # the requests just served wait behind those that were not
                served = {job for job, _, _ in slices}
                self._jobs = ([job for job in self._jobs if job not in served]
                              + [job for job in self._jobs
                                 if job in served and job.next < len(job.ids)])

    def _next_round(self) -> list[tuple[_Job, int, int]]:
        """The next round: ``(request, first input, end)`` for each request in it. Each request
        in turn adds its next inputs up to an equal share of ``round_tokens`` (at least one
        input, so a request of long inputs is never stuck), until the round is full."""
        if not self._jobs:
            return []
        share = max(1, self.round_tokens // len(self._jobs))
        slices: list[tuple[_Job, int, int]] = []
        tokens = inputs = 0
        for job in self._jobs:
            end, used = job.next, 0
            while end < len(job.ids):
                size = len(job.ids[end])
                over_share = end > job.next and used + size > share
                full = inputs == MAX_ROUND_INPUTS or tokens + size > self.round_tokens
                if over_share or (full and (slices or end > job.next)):  # the first always goes
                    break
                end, used, tokens, inputs = end + 1, used + size, tokens + size, inputs + 1
            if end > job.next:
                slices.append((job, job.next, end))
            if inputs == MAX_ROUND_INPUTS or tokens >= self.round_tokens:
                break
        return slices
