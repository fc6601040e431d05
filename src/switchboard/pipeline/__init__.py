"""The request pipeline: one life for every generation and embeddings request, whichever
dialect it arrived in (admit, augment, route, settle). Routes above it translate; the layers
below (governance, retrieval, the gateway, serving, the engine) never import it."""

from switchboard.pipeline.pipeline import (
    DEPLOYMENT_HEADER,
    Answered,
    Caller,
    Pipeline,
    Streaming,
)

__all__ = ["DEPLOYMENT_HEADER", "Answered", "Caller", "Pipeline", "Streaming"]
