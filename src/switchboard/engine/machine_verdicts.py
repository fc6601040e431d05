"""Answers measured once per machine and kept in the cache directory: whether llama.cpp's extra
CPU kernels run (``kernel_probe``), which weight format decodes faster (``weight_choice``).

A verdict's file name is a hash of what it depends on: the machine (CPU model and flags as
Linux reports them, the llama.cpp build) and the caller's own parts (model files with their
size and modification time, thread counts). A file that cannot be read or parsed counts as no
verdict; one that cannot be written only costs the measurement next time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from pathlib import Path
from typing import Any

import llama_cpp

log = logging.getLogger(__name__)


def machine_identity() -> str:
    """The CPU (model name and flags) and the llama.cpp build."""
    cpu = [platform.machine(), platform.processor()]
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip() in ("model name", "flags", "Features") and value.strip() not in cpu:
            cpu.append(value.strip())
    system = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    return "\n".join([*cpu, getattr(llama_cpp, "__version__", ""), system])


def file_identity(path: Path) -> str:
    """A model file as a verdict depends on it: where it is, its size and modification time."""
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def verdict_path(kind: str, parts: list[str], cache_dir: Path) -> Path:
    """Where the ``kind`` verdict for this machine and ``parts`` is kept."""
    key = hashlib.sha256("\n".join([machine_identity(), *parts]).encode())
    return cache_dir / f"{kind}.{key.hexdigest()[:16]}.json"


def read_verdict(path: Path) -> dict[str, Any] | None:
    try:
        verdict = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return verdict if isinstance(verdict, dict) else None


def keep_verdict(path: Path, verdict: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".partial-{os.getpid()}")
        partial.write_text(json.dumps(verdict))
        partial.replace(path)
    except OSError as exc:
        log.warning("could not keep a measured verdict in %s (%s)", path.parent, exc)
