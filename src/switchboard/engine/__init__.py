"""The local inference engine: model runner, scheduler, sampler and the thread that drives them.

Never imports a web framework; callers talk to it through ``Engine.submit`` and sinks.
"""

from switchboard.engine.engine import Engine, EngineConfig, SequenceHandle
from switchboard.engine.model import LlamaModel, ModelLoadError
from switchboard.engine.request import (
    EngineError,
    EngineOverloaded,
    GenerationRequest,
    PromptTooLong,
    RequestMetrics,
    SamplingParams,
    StepOutput,
)
from switchboard.engine.template import ChatTemplate, TemplateRenderError

__all__ = [
    "ChatTemplate",
    "Engine",
    "EngineConfig",
    "EngineError",
    "EngineOverloaded",
    "GenerationRequest",
    "LlamaModel",
    "ModelLoadError",
    "PromptTooLong",
    "RequestMetrics",
    "SamplingParams",
    "SequenceHandle",
    "StepOutput",
    "TemplateRenderError",
]
