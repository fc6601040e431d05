"""The local models this server runs: one per GGUF file named by a local deployment (loaded in
the background, so ``/health`` can say 503 while loading), looked up by deployment id. Deployments
of the same file share one engine."""

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
from switchboard.engine.kernel_probe import extra_buffers_run
from switchboard.engine.weight_choice import choose_weights
from switchboard.engine.weights import prepare_weights
from switchboard.errors import ModelNotFound, ModelsLoading
from switchboard.protocol.gateway_section import LOCAL_KIND
from switchboard.serving.deployments import LocalDeployment
from switchboard.serving.params import SamplingDefaults
from switchboard.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class LocalModel:
    """A GGUF model served by the local engine."""

    id: str
    created: int
    llama: LlamaModel
    engine: Engine
    template: ChatTemplate
    fingerprint: str
    sampling_defaults: SamplingDefaults

    @property
    def context_length(self) -> int:
        return self.engine.context_limit


def _weights_path(settings: Settings, source: Path) -> Path:
    """The file to load for ``source`` in the configured format (``auto``: the faster here)."""
    cache, threads = settings.cache_dir, settings.threads
    if settings.weights != "auto":
        return prepare_weights(source, settings.weights, cache, threads)
    candidates = list(dict.fromkeys([prepare_weights(source, "q8_0", cache, threads), source]))
    generic = not all(extra_buffers_run(p, cache) for p in candidates)
    return choose_weights(candidates, cache, threads, extra_buffers=not generic)


class ModelCatalog:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.deployments = [d.as_kind(LocalDeployment) for d in settings.routing.deployments
                            if d.provider == LOCAL_KIND]
        self.default_id = self.deployments[0].id if self.deployments else None
        self._models: dict[str, LocalModel] = {}  # deployment id -> model
        self.load_error: str | None = None
        self.loaded_at: float | None = None
        self._started = time.monotonic()

    @property
    def ready(self) -> bool:
        return len(self._models) == len(self.deployments)

    async def load(self) -> None:
        """Load every local deployment's model off the event loop."""
        sources = {d.id: self._source(d) for d in self.deployments}
        by_path: dict[Path, LocalModel] = {}
        for dep in self.deployments:
            source = sources[dep.id]
            public_id = dep.model or (
                dep.path.name.removesuffix(".gguf") if dep.path else self.settings.served_model_id
            )
            reserved = tuple(  # the dedicated deployments sharing this file's engine
                (d.id, d.reserved_sequences) for d in self.deployments
                if d.reserved_sequences and sources[d.id] == source
            )
            try:
                if source not in by_path:
                    by_path[source] = await asyncio.to_thread(
                        self._load_local, self.settings, source, public_id, reserved
                    )
            except Exception as exc:  # noqa: BLE001 - reported by /health, never silently
                log.error("model %s failed to load: %s", dep.id, exc)
                self.load_error = str(exc)
                return
            self._models[dep.id] = by_path[source]
        self.loaded_at = time.monotonic()
        for dep_id, model in self._models.items():
            log.info("deployment %s (%s) ready in %.2f s", dep_id, model.id,
                     self.loaded_at - self._started)

    def _source(self, dep: LocalDeployment) -> Path:
        """The GGUF a local deployment serves (deployments of one file share its engine)."""
        return (dep.path or self.settings.model or embedded_model_path()).resolve()

    @staticmethod
    def _load_local(
        settings: Settings, source: Path, public_id: str, reserved: tuple[tuple[str, int], ...]
    ) -> LocalModel:
        path = _weights_path(settings, source)
        config = EngineConfig(
            max_sequences=settings.max_sequences,
            max_queue=settings.max_queue,
            token_budget=settings.max_num_batched_tokens,
            cache_slots=settings.max_sequences if settings.use_prefix_cache else 0,
            reserved=reserved,
            kv_streams=settings.kv_layout == "per-sequence",
            fast_forward=settings.grammar_fast_forward,
            speculative=settings.speculative_ngram,
            speculative_max_batch=settings.speculative_max_batch,
        )
        llama = LlamaModel(
            path,
            n_ctx=settings.kv_cells,
            n_seq_max=config.sequence_ids,
            n_threads=settings.threads,
            flash_attn=settings.use_flash_attn,
            unified_kv=not config.kv_streams,
            extra_buffers=extra_buffers_run(path, settings.cache_dir),
        )
        draft = None
        try:
            if settings.draft_model is not None:  # guesses only: as given, read in one pool
                draft = LlamaModel(settings.draft_model, n_ctx=llama.n_ctx,
                                   n_seq_max=config.sequence_ids, n_threads=settings.threads,
                                   flash_attn=True, unified_kv=True)
                log.info("draft model %s guesses for speculating requests",
                         settings.draft_model.name)
            engine = Engine(llama, config, draft)
        except Exception:
            for loaded in (llama, draft):
                if loaded is not None:
                    loaded.close()
            raise
        log.info(
            "engine for %s: %d sequences, %s KV cache (%d tokens per request), flash attention "
            "%s, prefix cache %s, %d tokens per step", path.name, config.max_sequences,
            settings.kv_layout, llama.n_ctx_seq, "on" if llama.flash_attn else "off",
            "on" if config.cache_slots else "off", engine.scheduler.token_budget,
        )
        info = llama.info
        template = ChatTemplate(info.chat_template, info.bos_token, info.eos_token)
        digest = hashlib.sha256(f"{path.name}:{info.size_bytes}:{__version__}".encode())
        return LocalModel(
            id=public_id,
            created=int(source.stat().st_mtime),
            llama=llama,
            engine=engine,
            template=template,
            fingerprint="fp_" + digest.hexdigest()[:10],
            sampling_defaults=SamplingDefaults.resolve(settings, info.sampling),
        )

    def get(self, deployment_id: str | None) -> LocalModel:
        """The model of a local deployment (``None``: the first one)."""
        key = deployment_id or self.default_id
        model = self._models.get(key or "")
        if model is None:
            if any(d.id == key for d in self.deployments):
                raise ModelsLoading(self.load_error or "the model is still loading")
            raise ModelNotFound(deployment_id or "")
        return model

    def engine_stats(self) -> dict[str, dict[str, int]]:
        return {model.id: model.engine.stats() for model in self.list()}

    def list(self) -> list[LocalModel]:
        unique: dict[int, LocalModel] = {id(m): m for m in self._models.values()}
        return list(unique.values())

    def close(self) -> None:
        for model in self.list():
            model.engine.shutdown()
        self._models.clear()
