"""The README's gateway config example is a valid config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from switchboard.settings import load_settings

README = Path(__file__).parent.parent / "README.md"


def test_readme_gateway_config_is_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = README.read_text()
    block = re.search(r"<!-- readme-config.*?-->\n```yaml\n(.*?)```", text, re.S)
    assert block, "the README lost its config example"
    config = tmp_path / "switchboard.yaml"
    config.write_text(block.group(1))
    for name in ("VLLM_API_KEY", "TELKOM_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.setenv(name, "secret-" + name)
    settings = load_settings({"config": config})
    routing = settings.routing
    assert {m.name for m in routing.models} == {"llama-8b", "smollm2", "claude", "telkom-llm"}
    assert settings.secret_values()["telkom"] == "secret-TELKOM_API_KEY"
    claude = next(d for d in routing.deployments if d.id == "claude")
    assert claude.base_url == "https://api.anthropic.com"
    monkeypatch.delenv("VLLM_API_KEY")
    with pytest.raises(ValueError, match="VLLM_API_KEY"):
        load_settings({"config": config})
