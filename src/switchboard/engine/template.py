"""Chat templates: turn a list of messages into the prompt text a model was trained on.

Renders the GGUF's own ``tokenizer.chat_template`` (Hugging Face Jinja dialect) in a sandboxed
Jinja2 environment, so a template shipped inside a model file cannot touch the host. Templates
that read ``tools`` (Qwen 2.5, Hermes, Llama 3.x) get the request's tools in Hugging Face's layout
(``[{"type": "function", "function": {...}}]``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from jinja2 import TemplateError, Undefined, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

# ChatML, used when a GGUF carries no template of its own.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class TemplateRenderError(ValueError):
    """The template refused the conversation (e.g. ``raise_exception`` in the template)."""


def _raise_exception(message: str) -> None:
    raise TemplateRenderError(message)


def _tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)


class ChatTemplate:
    """A compiled chat template plus the special tokens it may refer to."""

    def __init__(self, source: str | None, bos_token: str = "", eos_token: str = "") -> None:
        self.source = source or CHATML_TEMPLATE
        self.bos_token = bos_token
        self.eos_token = eos_token
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True,
            lstrip_blocks=True,
            undefined=Undefined,
            extensions=["jinja2.ext.loopcontrols"],
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        self._template = env.from_string(self.source)
        self.variables = frozenset(meta.find_undeclared_variables(env.parse(self.source)))

    @property
    def knows_tools(self) -> bool:
        """Whether the template reads a ``tools`` list (and so can render function tools)."""
        return "tools" in self.variables

    def render(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> str:
        try:
            return self._template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                tools=tools,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                **extra,
            )
        except TemplateRenderError:
            raise
        except TemplateError as exc:
            raise TemplateRenderError(f"chat template failed: {exc}") from exc
        except TypeError as exc:  # e.g. a template concatenating None content
            raise TemplateRenderError(f"chat template failed: {exc}") from exc
