"""The ASGI application: routes, auth, error handlers, and the model catalog's lifetime.

``create_app`` builds everything from one ``Settings`` object. With a root path, the API is
mounted under it (``/Telkom-LLM/0.0.4/chat/completions``); ``/health`` also answers at ``/``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from switchboard import __version__
from switchboard.gateway.assembly import build_router
from switchboard.governance.assembly import build_governance
from switchboard.http.auth import authenticate, require_admin
from switchboard.http.errors import install_error_handlers
from switchboard.http.nosniff import NoSniffMiddleware
from switchboard.http.openapi import AUTHENTICATED, error_responses
from switchboard.http.request_id import RequestIdMiddleware
from switchboard.http.routes import (
    admin,
    buckets,
    chat,
    completions,
    embeddings,
    health,
    llmstudio,
    messages,
    metrics,
    models,
    responses,
    tracking,
    ui,
)
from switchboard.persistence.buckets import BucketRepository
from switchboard.pipeline import Pipeline
from switchboard.retrieval.buckets import BucketService
from switchboard.retrieval.service import EmbeddingService
from switchboard.serving import ChatService, ModelCatalog, ServingMetrics
from switchboard.settings import Settings

DESCRIPTION = (
    "OpenAI-compatible chat completions with the extensions of the Telnyx, vLLM, LLMstudio and "
    "Telkom APIs. Authenticate with `Authorization: Bearer KEY` or `x-api-key: KEY`."
)


def create_app(settings: Settings, catalog: ModelCatalog | None = None) -> FastAPI:
    catalog = catalog or ModelCatalog(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(catalog.load())
        embedding = asyncio.create_task(api.state.embeddings.load())
        await api.state.governance.open()
        await api.state.buckets.start()
        try:
            yield
        finally:
            loading.cancel()
            embedding.cancel()
            await api.state.buckets.close()
            await api.state.embeddings.close()
            await api.state.governance.close()  # writes the ledger's last rows
            await api.state.router.close()
            await asyncio.to_thread(catalog.close)

    api = FastAPI(
        title="Switchboard",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    api.state.settings = settings
    api.state.catalog = catalog
    api.state.metrics = ServingMetrics(catalog.engine_stats)
    api.state.chat = ChatService(catalog, settings.default_max_tokens, api.state.metrics)
    api.state.router = build_router(settings, api.state.chat, catalog, api.state.metrics.registry)
    api.state.governance = build_governance(settings, api.state.router.model_limits)
    api.state.governor = api.state.governance.governor
    api.state.embeddings = EmbeddingService()
    api.state.buckets = BucketService(BucketRepository(api.state.governance.database),
                                      api.state.embeddings)
    api.state.pipeline = Pipeline(api.state.router, api.state.governor, api.state.buckets,
                                  api.state.embeddings, catalog, settings)
    install_error_handlers(api)
    api.add_middleware(RequestIdMiddleware)
    api.add_middleware(NoSniffMiddleware)
    api.include_router(health.router)
    api.include_router(metrics.router)
    for routes in (chat, messages, completions, responses, embeddings, buckets, models,
                   llmstudio, tracking):
        api.include_router(routes.router, dependencies=[Depends(authenticate)],
                           responses=error_responses(*AUTHENTICATED))
    api.include_router(admin.router, dependencies=[Depends(require_admin)],
                       responses=error_responses(*AUTHENTICATED, 403))
    ui.mount(api)
    if not settings.root_path:
        return api

    # Starlette runs only the outermost app's lifespan; the mounted API shares its state.
    outer = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    outer.state = api.state
    outer.include_router(health.router, include_in_schema=False)
    outer.add_middleware(RequestIdMiddleware)
    outer.add_middleware(NoSniffMiddleware)
    outer.mount(settings.root_path, api)
    return outer
