"""Switchboard: a self-hostable, OpenAI-compatible chat-completions platform."""

__version__ = "0.1.0"
