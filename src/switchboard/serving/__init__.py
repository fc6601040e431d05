"""Serving: between the HTTP layer and the engine. Picks the model, checks what a request asks
for, renders the prompt, runs the engine and shapes OpenAI responses. No web framework here."""

from switchboard.errors import ModelNotFound, ModelsLoading, Unsupported
from switchboard.serving.catalog import LocalModel, ModelCatalog
from switchboard.serving.chat import ChatRun, ChatService, GenerationFailed
from switchboard.serving.metrics import ServingMetrics

__all__ = [
    "ChatRun",
    "ChatService",
    "GenerationFailed",
    "LocalModel",
    "ModelCatalog",
    "ModelNotFound",
    "ModelsLoading",
    "ServingMetrics",
    "Unsupported",
]
