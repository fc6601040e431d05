"""The official ``openai`` Node SDK (from npm) streams a completion, as in the Ektos seed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import API_KEY, RunningServer

NODE_DIR = Path(__file__).parent.parent / "node"


@pytest.fixture(scope="module")
def node_sdk() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are required for the Node SDK tests")
    if not (NODE_DIR / "node_modules" / "openai").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=300
        )
    return NODE_DIR


def test_node_sdk_streams_a_completion(
    node_sdk: Path, server: RunningServer, reference: dict
) -> None:
    result = subprocess.run(
        ["node", "ektos_stream.mjs", server.v1, API_KEY, "smollm2-135m-instruct"],
        cwd=node_sdk, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["role"] == "assistant"
    assert out["text"] == reference["items"][0]["completion_text"]
    assert out["finish"] == "length"
    assert out["usage"]["completion_tokens"] == 32
