"""Dependencies point one way: the package-level import graph of ``src/switchboard``, computed
from the source (every ``switchboard.X`` import, those inside functions and under
``TYPE_CHECKING`` included), has no cycle and no import that goes up ``LAYERS``; no module is
over ``MAX_LINES``; only the HTTP layer touches the web framework; and importing
``switchboard.http`` builds nothing."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "switchboard"
ROOT = "switchboard"  # the package's own __init__ (``__version__``)
MAX_LINES = 600

# Top to bottom: a package may import only packages in layers below its own (never one in its
# own layer but itself). "switchboard" is the root package's __init__.
LAYERS: list[set[str]] = [
    {"__main__"},
    {"cli"},
    {"keys_command", "buckets_command", "settings_reference"},
    {"http"},
    {"pipeline"},
    {"governance", "retrieval"},
    {"gateway", "persistence"},
    {"serving"},
    {"engine", "settings"},
    {"protocol"},
    {"errors", "webui", ROOT},
]

# Imports known to go up LAYERS, each waiting for a change that removes it: (importer, imported,
# module that does it). Empty: every edge points down.
PENDING: set[tuple[str, str, str]] = set()

WEB_FRAMEWORKS = ("fastapi", "starlette")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(module: str) -> str:
    """``switchboard.gateway.router`` → ``gateway``; ``switchboard.cli`` → ``cli``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def _top_levels() -> set[str]:
    return {p.stem if p.suffix == ".py" else p.name for p in PACKAGE.iterdir()
            if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}


def _imported_modules(path: Path, module: str) -> list[str]:
    """Every module name ``path`` imports (absolute, relative ones resolved)."""
    is_package = path.name == "__init__.py"
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names]  # `from pkg import mod`
    return names


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def package_edges() -> dict[tuple[str, str], set[str]]:
    """(importing package, imported package) → the modules that make the import."""
    tops = _top_levels()
    edges: dict[tuple[str, str], set[str]] = defaultdict(set)
    for module, path in _modules().items():
        source = _package_of(module)
        for name in _imported_modules(path, module):
            parts = name.split(".")
            if parts[0] != ROOT:
                continue
            target = parts[1] if len(parts) > 1 and parts[1] in tops else ROOT
            if target != source:
                edges[(source, target)].add(module)
    return edges


def _layer_of(package: str) -> int:
    for depth, layer in enumerate(LAYERS):
        if package in layer:
            return depth
    raise AssertionError(f"package {package!r} is in no layer: add it to LAYERS")


def _cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        graph[source].add(target)
    found: list[list[str]] = []
    state: dict[str, str] = {}  # "open" while on the path, "done" after

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_every_package_has_a_layer() -> None:
    placed = set().union(*LAYERS)
    missing = (_top_levels() | {ROOT}) - placed
    assert not missing, f"packages in no layer: {sorted(missing)} (add them to LAYERS)"


def test_no_package_import_cycle() -> None:
    cycles = _cycles(set(package_edges()))
    assert not cycles, "package import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_imports_point_down_the_layers() -> None:
    upward = []
    for (source, target), modules in sorted(package_edges().items()):
        if _layer_of(target) > _layer_of(source):
            continue
        pending = {m for m in modules if (source, target, m) in PENDING}
        upward += [f"{m} imports switchboard.{target} ({source} -> {target})"
                   for m in sorted(modules - pending)]
    assert not upward, "imports that go up (or across) the layers:\n" + "\n".join(upward)


def test_pending_edges_still_exist() -> None:
    """A pending edge that is gone must leave the list (it would hide a new one)."""
    edges = package_edges()
    stale = [p for p in PENDING if p[2] not in edges.get((p[0], p[1]), set())]
    assert not stale, f"no longer imported, remove from PENDING: {stale}"


def test_no_module_is_too_long() -> None:
    sizes = {module: len(path.read_text().splitlines()) for module, path in _modules().items()}
    long = [f"{module}: {lines} lines" for module, lines in sorted(sizes.items())
            if lines > MAX_LINES]
    assert not long, f"modules over {MAX_LINES} lines (split them): " + ", ".join(long)


def test_only_the_http_layer_uses_the_web_framework() -> None:
    offenders = []
    for module, path in _modules().items():
        if _package_of(module) == "http":
            continue
        for name in _imported_modules(path, module):
            if name.split(".")[0] in WEB_FRAMEWORKS:
                offenders.append(f"{module} imports {name}")
    assert not offenders, "\n".join(sorted(set(offenders)))


def test_importing_the_http_package_builds_nothing() -> None:
    init = PACKAGE / "http" / "__init__.py"
    imports = [n for n in ast.walk(ast.parse(init.read_text()))
               if isinstance(n, ast.Import | ast.ImportFrom)]
    assert not imports, "switchboard/http/__init__.py must import nothing (use http.app)"


def test_the_checker_sees_what_it_should() -> None:
    """The graph and the cycle search on known inputs, so a broken checker cannot pass."""
    edges = package_edges()
    assert "switchboard.gateway.router" in edges[("gateway", "protocol")]
    assert "switchboard.serving.catalog" in edges[("serving", ROOT)]  # from switchboard import ..
    assert ("protocol", "governance") not in edges
    assert _cycles({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == [["a", "b", "c", "a"]]
    assert _cycles({("a", "b"), ("b", "c")}) == []
    assert _layer_of("http") < _layer_of("pipeline") < _layer_of("gateway") < _layer_of("serving")
