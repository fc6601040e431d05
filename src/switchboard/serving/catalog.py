"""The models this server serves: loads them (in the background, so ``/health`` can say 503 while
loading) and looks them up by public id."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from switchboard import __version__
from switchboard.engine import ChatTemplate, Engine, EngineConfig, LlamaModel
from switchboard.engine.embedded import embedded_model_path
from switchboard.engine.weights import prepare_weights
from switchboard.settings import Settings

log = logging.getLogger(__name__)


class ModelNotFound(LookupError):
    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' does not exist or you do not have access to it.")
        self.model = model


class ModelsLoading(RuntimeError):
    pass


@dataclass
class LocalModel:
    """A GGUF model served by the local engine."""

    id: str
    created: int
    llama: LlamaModel
    engine: Engine
    template: ChatTemplate
    fingerprint: str

    @property
    def context_length(self) -> int:
        return self.engine.context_limit


class ModelCatalog:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.default_id = settings.served_model_id
        self._models: dict[str, LocalModel] = {}
        self.load_error: str | None = None
        self.loaded_at: float | None = None
        self._started = time.monotonic()

    @property
    def ready(self) -> bool:
        return bool(self._models)

    async def load(self) -> None:
        """Load every configured model off the event loop."""
        try:
            model = await asyncio.to_thread(self._load_local, self.settings)
        except Exception as exc:  # reported by /health, never silently
            log.error("model failed to load: %s", exc)
            self.load_error = str(exc)
            return
        self._models[model.id] = model
        self.loaded_at = time.monotonic()
        log.info("model %s ready in %.2f s", model.id, self.loaded_at - self._started)

    @staticmethod
    def _load_local(settings: Settings) -> LocalModel:
        source: Path = settings.model or embedded_model_path()
        path = prepare_weights(source, settings.weights, settings.cache_dir, settings.threads)
        config = EngineConfig(
            max_sequences=settings.max_sequences,
            max_queue=settings.max_queue,
            cache_slots=settings.max_sequences if settings.use_prefix_cache else 0,
        )
        llama = LlamaModel(
            path,
            n_ctx=settings.n_ctx,
            n_seq_max=config.sequence_ids,
            n_threads=settings.threads,
            flash_attn=settings.use_flash_attn,
        )
        engine = Engine(llama, config)
        info = llama.info
        template = ChatTemplate(info.chat_template, info.bos_token, info.eos_token)
        digest = hashlib.sha256(f"{path.name}:{info.size_bytes}:{__version__}".encode())
        return LocalModel(
            id=settings.served_model_id,
            created=int(source.stat().st_mtime),
            llama=llama,
            engine=engine,
            template=template,
            fingerprint="fp_" + digest.hexdigest()[:10],
        )

    def get(self, model_id: str | None) -> LocalModel:
        if not self._models:
            raise ModelsLoading(self.load_error or "the model is still loading")
        model = self._models.get(model_id or self.default_id)
        if model is None:
            raise ModelNotFound(model_id or "")
        return model

    def engine_stats(self) -> dict[str, dict[str, int]]:
        return {model.id: model.engine.stats() for model in self._models.values()}

    def list(self) -> list[LocalModel]:
        return list(self._models.values())

    def close(self) -> None:
        for model in self._models.values():
            model.engine.shutdown()
        self._models.clear()
