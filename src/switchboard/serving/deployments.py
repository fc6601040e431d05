"""The options of a ``local`` deployment (one that runs on this server's own engine): the GGUF it
serves, the id it reports and the engine sequences kept for it. The serving layer's catalog loads
one engine per file from them; the gateway's local provider registers this model as its kind's
options."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from switchboard.protocol.gateway_section import DeploymentConfig


class LocalDeployment(DeploymentConfig):
    """A deployment on the local engine (sends no key anywhere)."""

    path: Path | None = Field(default=None, description="GGUF file (default: embedded model).")
    model: str | None = Field(default=None, description="The model id reported in responses.")
    reserved_sequences: int = Field(
        default=0, ge=0, description="Engine sequences kept for this deployment (dedicated)."
    )
