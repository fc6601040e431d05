"""The documentation site: it builds with ``mkdocs build --strict`` (no warning, no broken link
or anchor), every config example in it loads, and its configuration reference is the
``Settings`` model's."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from pydantic import Field

from switchboard.gateway.config import gateway_config
from switchboard.settings import Settings, load_settings
from switchboard.settings_reference import reference_drift, render_reference_table
from tests.conftest import API_KEY, RunningServer

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>\w+)[^\n]*\n(?P<body>.*?)^(?P=indent)```",
                   re.S | re.M)


def code_blocks(path: Path, lang: str) -> list[str]:
    return [textwrap.dedent(m["body"]) for m in FENCE.finditer(path.read_text())
            if m["lang"] == lang]


def mkdocs_build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=project, capture_output=True, text=True, timeout=240, env=env,
    )


def test_site_builds_strictly(tmp_path: Path) -> None:
    result = mkdocs_build(ROOT, tmp_path / "site")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    for page in ("deployment", "configuration", "performance", "architecture", "api/openai"):
        assert (tmp_path / "site" / page / "index.html").is_file()
    python_api = (tmp_path / "site" / "python-api" / "index.html").read_text()
    assert "load_settings" in python_api  # mkdocstrings rendered the docstrings


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    """The strict build is a real guard: a link to a missing anchor stops it."""
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path)
    shutil.copytree(ROOT / "src", tmp_path / "src")  # mkdocstrings reads the code from src/
    page = tmp_path / "docs" / "getting-started.md"
    page.write_text(page.read_text() + "\nSee [nowhere](serving.md#no-such-section).\n")
    result = mkdocs_build(tmp_path, tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-section" in result.stdout + result.stderr


def test_configuration_reference_is_the_settings_model() -> None:
    drift = reference_drift((DOCS / "configuration.md").read_text())
    assert drift is None, drift


def test_a_new_setting_without_regenerating_fails() -> None:
    class Extended(Settings):
        shiny_new_option: int = Field(default=3, description="Something new.")

    page = (DOCS / "configuration.md").read_text()
    drift = reference_drift(page, Extended)
    assert drift is not None and "shiny_new_option" in drift
    assert "`--shiny-new-option`" in render_reference_table(Extended)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_config_examples_load(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every YAML block in the docs is a config file, and loads as one; every JSON block parses.
    (The README's one config example is tests/test_readme.py's.)"""
    for block in code_blocks(page, "json"):
        json.loads(block)
    for index, block in enumerate(code_blocks(page, "yaml")):
        data = yaml.safe_load(block)
        for source in (data.get("secrets") or {}).values():
            if isinstance(source, dict) and "env" in source:
                monkeypatch.setenv(source["env"], "secret-" + source["env"])
        config = tmp_path / f"example-{index}.yaml"
        config.write_text(block)
        settings = load_settings({"config": config})
        assert gateway_config(settings).models, f"{page.name} block {index} routes no model"


def test_gateway_full_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (DOCS / "gateway.md").read_text()
    block = re.search(r"<!-- gateway-config.*?-->\n```yaml\n(.*?)```", text, re.S)
    assert block, "the gateway page lost its full config example"
    config = tmp_path / "switchboard.yaml"
    config.write_text(block.group(1))
    for name in ("VLLM_API_KEY", "TELKOM_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.setenv(name, "secret-" + name)
    settings = load_settings({"config": config})
    routing = gateway_config(settings)
    assert {m.name for m in routing.models} == {"llama-8b", "smollm2", "claude", "telkom-llm"}
    assert settings.secret_values()["telkom"] == "secret-TELKOM_API_KEY"
    claude = next(d for d in routing.deployments if d.id == "claude")
    assert claude.base_url == "https://api.anthropic.com"
    monkeypatch.delenv("VLLM_API_KEY")
    with pytest.raises(ValueError, match="VLLM_API_KEY"):
        load_settings({"config": config})


def test_one_page_shows_replicas_on_postgresql_and_redis_behind_a_load_balancer() -> None:
    page = (DOCS / "deployment.md").read_text()
    commands = [line for block in code_blocks(DOCS / "deployment.md", "bash")
                for line in block.splitlines() if line.startswith("switchboard serve")]
    assert len(commands) >= 2
    assert page.count("--database-url postgresql+asyncpg://") >= 2
    assert page.count("--redis-url redis://") >= 2
    assert "upstream switchboard" in page  # the load balancer's config


def test_every_page_is_in_the_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in PAGES:
        assert str(page.relative_to(DOCS)) in nav, f"{page} is not in mkdocs.yml's nav"


def endpoint_examples() -> list[str]:
    """The curl blocks of the API overview's "one request per endpoint" section."""
    text = (DOCS / "api" / "index.md").read_text()
    section = text.split("<!-- endpoint-examples:", 1)[1].split("<!-- /endpoint-examples -->")[0]
    return [m["body"] for m in FENCE.finditer(section) if m["lang"] == "bash"]


def test_the_overview_shows_one_request_per_generation_endpoint() -> None:
    paths = {re.search(r"127\.0\.0\.1:8000(\S+)", block)[1] for block in endpoint_examples()}
    assert paths == {"/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/completions",
                     "/tokenize", "/v1/embeddings", "/api/engine/chat/local"}


@pytest.mark.parametrize("index", range(7))
def test_each_endpoint_example_runs(server: RunningServer, index: int) -> None:
    """Run as written (curl -f fails on any 4xx/5xx), only the host and the key swapped in."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    block = endpoint_examples()[index].replace("http://127.0.0.1:8000", server.base)
    done = subprocess.run(["bash", "-c", block], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SWITCHBOARD_KEY": API_KEY})
    assert done.returncode == 0, f"{block}\n{done.stderr}"
    answer = json.loads(done.stdout)
    assert answer and answer.get("error") is None, done.stdout
