"""The benchmarks run from any directory, import nothing from ``tests/``, each take ``--json``,
and ``bench/README.md`` lists every one."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent / "bench"
HELPERS = {"common.py", "services.py"}
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if p.name not in HELPERS)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_runs_from_anywhere_and_takes_json(script: Path, tmp_path: Path) -> None:
    source = script.read_text()
    assert "sys.path" not in source and not re.search(r"^\s*(from|import) tests\b", source, re.M)
    result = subprocess.run([sys.executable, str(script), "--help"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--json" in result.stdout


def test_readme_lists_every_script() -> None:
    readme = (BENCH / "README.md").read_text()
    for script in SCRIPTS:
        assert f"`{script.name}" in readme, f"bench/README.md does not list {script.name}"


def test_json_result_is_one_object_on_stdout(tmp_path: Path) -> None:
    """``--json`` sends the tables to stderr and one object, with the machine, to stdout."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(BENCH)!r})\n"
        "from common import bench_parser, run_benchmark\n"
        "def measure(args):\n"
        "    print('| a table |')\n"
        "    return {'figure': 42}\n"
        "run_benchmark(bench_parser('A probe.'), measure)\n"
    )
    result = subprocess.run([sys.executable, str(probe), "--json"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["result"] == {"figure": 42} and report["benchmark"] == "probe"
    assert report["machine"]["cores"] >= 1 and "python" in report["machine"]
    assert "| a table |" in result.stderr
