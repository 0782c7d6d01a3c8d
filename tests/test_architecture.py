"""The architecture a newcomer reads in docs/architecture.md, kept true by the code itself.

Imports point down the pipeline (profile -> compile -> analysis and models -> aggregate ->
output -> the per-file job -> batches -> library tools -> commands), there are no import
cycles, modules and functions stay small enough to read, and every module is on the map.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "runner"
ARCHITECTURE = ROOT / "docs" / "architecture.md"

# Layers, lowest first: a module may import its own layer and the layers before it. Longest
# prefix wins. Within a layer, the cycle check keeps the modules apart.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("runner", "runner.errors", "runner.tree", "runner.procs",
                    "runner.tagwhitelist", "runner.registry", "runner.derive", "runner.pools",
                    "runner.conditioning")),
    ("profile", ("runner.profile",)),
    ("model supply", ("runner.models.supply",)),
    ("compile", ("runner.compile",)),
    ("analysis", ("runner.analysis", "runner.models", "runner.tempo", "runner.harmony")),
    ("aggregate", ("runner.aggregate",)),
    ("output", ("runner.output",)),
    ("one file", ("runner.extract",)),
    ("batches", ("runner.batch",)),
    ("library tools", ("runner.library", "runner.catalog", "runner.report", "runner.training",
                       "runner.dataset")),
    ("commands", ("runner.cli", "runner.models.commands", "runner.models.convert",
                  "runner.catalog.commands", "runner.report.commands",
                  "runner.training.commands", "runner.dataset.commands",
                  "runner.dataset.conditioning_command")),
]

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
# Stated exceptions: name -> why it may be longer.
LONG_MODULES: dict[str, str] = {}
LONG_FUNCTIONS: dict[str, str] = {}


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path) -> set[str]:
    """Every runner module `name` imports, at the top or inside a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def layer_of(module: str) -> int:
    best, level = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            # "runner" is the package itself; other prefixes take their subpackages
            matches = module == prefix or (prefix != "runner" and module.startswith(prefix + "."))
            if matches and len(prefix) > best:
                best, level = len(prefix), index
    if level < 0:
        raise AssertionError(f"{module}: in no layer of tests/test_architecture.py")
    return level


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_imports_point_down_the_pipeline():
    upward = []
    for module, targets in GRAPH.items():
        for target in targets:
            if module == "runner" or target == "runner":
                continue  # the package's version string
            if layer_of(target) > layer_of(module):
                upward.append(f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} "
                              f"({LAYERS[layer_of(target)][0]})")
    assert upward == []


def _cycles() -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w == "runner" or v == "runner":
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            # a package and the submodules its __init__ re-exports are one unit, not a cycle
            outside = {c for c in component if not any(
                c.startswith(o + ".") for o in component if o != c)}
            if len(component) > 1 and len(outside) > 1:
                found.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles():
    assert _cycles() == []


def test_modules_stay_readable():
    long = {name: path.read_text(encoding="utf-8").count("\n") for name, path in MODULES.items()}
    too_long = {n: lines for n, lines in long.items()
                if lines > MAX_MODULE_LINES and n not in LONG_MODULES}
    assert too_long == {}


def test_functions_stay_readable():
    too_long = {}
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                qualified = f"{name}.{node.name}"
                if lines > MAX_FUNCTION_LINES and qualified not in LONG_FUNCTIONS:
                    too_long[qualified] = lines
    assert too_long == {}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_is_on_the_map(module):
    """docs/architecture.md names every module (by its path) and says what it does."""
    path = MODULES[module].relative_to(ROOT).as_posix()
    text = ARCHITECTURE.read_text(encoding="utf-8")
    if path.endswith("/__init__.py"):
        path = path[: -len("__init__.py")]
    assert f"`{path}`" in text, f"{path} is not in docs/architecture.md"


def test_the_layer_check_can_fail():
    """A compile module importing the output step would be an upward import."""
    assert layer_of("runner.compile.stages") < layer_of("runner.output.files")
    assert layer_of("runner.models.supply.lock") < layer_of("runner.compile.models")
    assert layer_of("runner.models.convert.musicnn") > layer_of("runner.models.stage")
