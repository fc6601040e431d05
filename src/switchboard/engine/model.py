"""The model runner: a GGUF loaded through llama.cpp's low-level API (``llama_cpp``).

Owns the llama.cpp model, context and batch memory: tokenization, token pieces, and ``decode``,
which runs one ``llama_decode`` over tokens of many sequences and returns the logits rows that were
asked for. The KV cache is either one unified pool of cells every sequence draws from, or a stream
of ``n_ctx / n_seq_max`` cells per sequence id (llama.cpp's ``kv_unified = false``), where each
token's attention reads only its own sequence's cells. It knows nothing of scheduling or sampling.
"""

from __future__ import annotations

import ctypes
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import numpy as np

from switchboard.engine.kernel_probe import extra_buffers_run

log = logging.getLogger(__name__)


ProgressHook = Callable[[int, int], None]
_progress: ProgressHook | None = None
_TENSOR_LINE = re.compile(rb"^\[\s*(\d+)/\s*(\d+)\]")


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _quiet_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """llama.cpp's log goes to our logger at debug level instead of stderr."""
    if _progress is not None:
        match = _TENSOR_LINE.match(text)
        if match:
            done, total = int(match.group(1)), int(match.group(2))
            if done == total or done % max(1, total // 10) == 0:
                _progress(done, total)
    if log.isEnabledFor(logging.DEBUG):
        log.debug(text.decode("utf-8", "replace").rstrip())


@contextmanager
def quantize_progress(hook: ProgressHook) -> Iterator[None]:
    """Report llama.cpp's per-tensor quantization lines as ``hook(done, total)``."""
    global _progress
    _progress = hook
    try:
        yield
    finally:
        _progress = None


_backend_ready = False


def init_backend() -> None:
    global _backend_ready
    if not _backend_ready:
        llama_cpp.llama_log_set(_quiet_log, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        _backend_ready = True


class ModelLoadError(RuntimeError):
    pass


SAMPLING_KEYS = ("temp", "top_k", "top_p", "min_p")


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    n_vocab: int
    n_ctx_train: int
    chat_template: str | None
    bos_token: str
    eos_token: str
    description: str
    size_bytes: int
    # the sampling defaults the GGUF's author recommends (``general.sampling.*``: temp, top_k,
    # top_p, min_p), as llama.cpp reads them; empty when the file names none
    sampling: dict[str, float]


class _Batch:
    """A ``llama_batch`` whose arrays are NumPy buffers we own (filled without Python loops)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.token = np.zeros(capacity, dtype=np.int32)
        self.pos = np.zeros(capacity, dtype=np.int32)
        self.n_seq_id = np.ones(capacity, dtype=np.int32)
        self.seq = np.zeros(capacity, dtype=np.int32)
        self.logits = np.zeros(capacity, dtype=np.int8)
        seq_base = self.seq.ctypes.data
        self._seq_ptrs = (ctypes.POINTER(ctypes.c_int32) * capacity)(
            *(ctypes.cast(seq_base + 4 * i, ctypes.POINTER(ctypes.c_int32))
              for i in range(capacity))
        )
        self.struct = llama_cpp.llama_batch()
        self.struct.token = self.token.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token))
        self.struct.embd = ctypes.POINTER(ctypes.c_float)()
        self.struct.pos = self.pos.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_pos))
        self.struct.n_seq_id = self.n_seq_id.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        self.struct.seq_id = ctypes.cast(
            self._seq_ptrs, ctypes.POINTER(ctypes.POINTER(llama_cpp.llama_seq_id))
        )
        self.struct.logits = self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))


class LlamaModel:
    """One GGUF model with one llama.cpp context holding up to ``n_seq_max`` sequences."""

    def __init__(
        self,
        path: Path,
        n_ctx: int,
        n_seq_max: int,
        n_threads: int,
        n_batch: int = 512,
        flash_attn: bool = False,
        extra_buffers: bool | None = None,
        unified_kv: bool = True,
    ) -> None:
        """``extra_buffers``: llama.cpp's AMX / repacked weight layouts (``None``: where they
        run). ``unified_kv``: one pool of ``n_ctx`` cells, or a stream per sequence id."""
        init_backend()
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        if extra_buffers is None:
            extra_buffers = extra_buffers_run(path)
        mparams = llama_cpp.llama_model_default_params()
        mparams.use_extra_bufts = extra_buffers
        self._model = llama_cpp.llama_model_load_from_file(str(path).encode(), mparams)
        if not self._model:
            raise ModelLoadError(f"llama.cpp could not load {path} (not a valid GGUF file?)")
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self.n_ctx_train = llama_cpp.llama_model_n_ctx_train(self._model)

        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = n_batch
        cparams.n_ubatch = n_batch
        cparams.n_seq_max = n_seq_max
        cparams.n_threads = n_threads
        cparams.n_threads_batch = n_threads
        cparams.kv_unified = unified_kv
        # CPU flash attention skips masked cells (faster in a unified pool, slower with streams)
        # and shifts logprobs slightly; callers choose (Settings.use_flash_attn).
        cparams.flash_attn_type = 1 if flash_attn else 0
        cparams.no_perf = True
        self._ctx = llama_cpp.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            llama_cpp.llama_model_free(self._model)
            raise ModelLoadError(f"llama.cpp could not create a context for {path}")
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self.n_ctx = llama_cpp.llama_n_ctx(self._ctx)
        self.unified_kv = unified_kv
        self.flash_attn = flash_attn
        self.n_ctx_seq = llama_cpp.llama_n_ctx_seq(self._ctx)  # the most cells one sequence holds
        self.n_batch = n_batch
        self.n_seq_max = n_seq_max
        self._batch = _Batch(n_batch)
        self._piece_buf = ctypes.create_string_buffer(256)
        self._state_buf = (ctypes.c_uint8 * 0)()
        self._pending_copies: set[int] = set()  # streams in whole-stream copies not yet made
        self._pieces: dict[int, bytes] = {}
        self.eog_token_ids = [
            t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self._vocab, t)
        ]
        template = llama_cpp.llama_model_chat_template(self._model, None)
        desc = ctypes.create_string_buffer(256)
        llama_cpp.llama_model_desc(self._model, desc, len(desc))
        self.info = ModelInfo(
            path=path,
            n_vocab=self.n_vocab,
            n_ctx_train=self.n_ctx_train,
            chat_template=template.decode("utf-8") if template else None,
            bos_token=self._special_text(llama_cpp.llama_vocab_bos(self._vocab)),
            eos_token=self._special_text(llama_cpp.llama_vocab_eos(self._vocab)),
            description=desc.value.decode("utf-8", "replace"),
            size_bytes=path.stat().st_size,
            sampling={name: value for name in SAMPLING_KEYS
                      if (value := self._meta_number(f"general.sampling.{name}")) is not None},
        )

    def _meta_number(self, key: str) -> float | None:
        """A numeric GGUF metadata value (``None`` when absent or not a number)."""
        buf = ctypes.create_string_buffer(64)
        if llama_cpp.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf)) < 0:
            return None
        try:
            return float(buf.value)
        except ValueError:
            return None

    # --- vocabulary -------------------------------------------------------------------------
    @property
    def vocab(self) -> llama_cpp.llama_vocab_p:
        """The llama.cpp vocabulary handle (for llguidance's tokenizer)."""
        return self._vocab

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True
                 ) -> list[int]:
        """``parse_special``: control-token text becomes the control token (else plain text)."""
        data = text.encode("utf-8", "replace")  # lone surrogates (valid JSON escapes) become '?'
        capacity = len(data) + 16
        buf = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buf, capacity, add_special,
                                     parse_special)
        if n < 0:
            capacity = -n
            buf = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(
                self._vocab, data, len(data), buf, capacity, add_special, parse_special
            )
        return list(buf[:n])

    def piece(self, token: int, special: bool = False) -> bytes:
        """The bytes a token stands for (control tokens are empty unless ``special``)."""
        key = token if not special else -1 - token
        cached = self._pieces.get(key)
        if cached is not None:
            return cached
        n = llama_cpp.llama_token_to_piece(
            self._vocab, token, self._piece_buf, len(self._piece_buf), 0, special
        )
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
            value = buf.raw[:n]
        else:
            value = self._piece_buf.raw[:n]
        self._pieces[key] = value
        return value

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def _special_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.piece(token, special=True).decode("utf-8", "replace")

    # --- decoding ----------------------------------------------------------------------------
    def decode(
        self,
        tokens: np.ndarray,
        positions: np.ndarray,
        seq_ids: np.ndarray,
        want_logits: np.ndarray,
    ) -> np.ndarray:
        """Run one forward pass; return a copy of the logits rows flagged in ``want_logits``.

        All arrays have one entry per token; at most ``n_batch`` tokens.
        """
        n = len(tokens)
        if n == 0 or n > self.n_batch:
            raise ValueError(f"batch of {n} tokens (limit {self.n_batch})")
        b = self._batch
        b.token[:n] = tokens
        b.pos[:n] = positions
        b.seq[:n] = seq_ids
        b.logits[:n] = want_logits
        b.struct.n_tokens = n
        status = llama_cpp.llama_decode(self._ctx, b.struct)
        self._pending_copies.clear()  # applied by llama_decode
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status}")
        n_out = int(np.count_nonzero(want_logits))
        if n_out == 0:
            return np.empty((0, self.n_vocab), dtype=np.float32)
        ptr = llama_cpp.llama_get_logits(self._ctx)
        return np.ctypeslib.as_array(ptr, shape=(n_out, self.n_vocab)).copy()

    def share(self, src_seq: int, dst_seq: int, n_tokens: int) -> None:
        """Give ``dst_seq`` the first ``n_tokens`` cells of ``src_seq``.

        In a unified pool the cells are shared, not copied. With a stream per sequence llama.cpp
        copies only whole streams, at the next ``decode`` (its cost grows with the stream's size,
        whatever the source holds), so a source holding at most a quarter of its stream is
        copied cell by cell now instead, through llama.cpp's sequence state (which costs what
        the source holds; ``bench/decode_step.py --copies`` compares the two); either way the
        copy is cut back to ``n_tokens`` cells.
        """
        if self.unified_kv:
            llama_cpp.llama_memory_seq_cp(self._memory, src_seq, dst_seq, 0, n_tokens)
            return
        if not self._copy_cells(src_seq, dst_seq):
            llama_cpp.llama_memory_seq_cp(self._memory, src_seq, dst_seq, -1, -1)
            self._pending_copies.update((src_seq, dst_seq))
        llama_cpp.llama_memory_seq_rm(self._memory, dst_seq, n_tokens, -1)

    def _copy_cells(self, src_seq: int, dst_seq: int) -> bool:
        """Copy ``src_seq``'s cells into ``dst_seq``'s stream now, where that beats a whole-stream
        copy. Not for a stream in a pending whole-stream copy: llama.cpp moves its data only at
        the next ``decode``, so a state read now would be stale, or a write now overwritten or
        moved in its place."""
        if src_seq in self._pending_copies or dst_seq in self._pending_copies:
            return False
        held = llama_cpp.llama_memory_seq_pos_max(self._memory, src_seq) + 1
        if held <= 0 or held > self.n_ctx_seq // 4:
            return False
        size = llama_cpp.llama_state_seq_get_size(self._ctx, src_seq)
        if len(self._state_buf) < size:
            self._state_buf = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(self._ctx, self._state_buf, size, src_seq)
        return bool(written) and bool(
            llama_cpp.llama_state_seq_set_data(self._ctx, self._state_buf, written, dst_seq))

    def forget(self, seq_id: int, from_pos: int = 0) -> None:
        """Drop the KV cells of ``seq_id`` from position ``from_pos`` on."""
        llama_cpp.llama_memory_seq_rm(self._memory, seq_id, from_pos, -1)

    def close(self) -> None:
        if self._ctx:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            llama_cpp.llama_model_free(self._model)
            self._model = None
