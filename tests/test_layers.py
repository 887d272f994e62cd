"""The shape of the code holds: every import (lazy ones inside functions included) points down the
layer order of docs/architecture.md, no module imports itself back through others, and the
linter configured in pyproject.toml passes."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
# Bottom to top, as docs/architecture.md lists them. "rsdistill" is the package itself: its
# version and the lazy table of the public API, which imports nothing by statement.
LAYERS = ["rsdistill", "errors", "registry", "files", "console", "spectral", "io", "metrics", "unmixing", "preprocessing", "tokens",
          "figures", "data", "masking", "losses", "models", "distill", "tasks", "runs", "recipes", "deploy", "inference", "evaluation", "experiments",
          "cli", "__main__"]


def modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / "rsdistill").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, name: str) -> list[tuple[str, int]]:
    """(imported rsdistill module, line) for every import statement in the file, at any depth."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.split(".")[0] == "rsdistill"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] == "rsdistill":
                found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def graph() -> dict[str, set[tuple[str, int]]]:
    """Module -> {(imported module, line)}: ``from a.b import c`` is module a.b.c where that exists, else a.b."""
    known = modules()
    edges = defaultdict(set)
    for name, path in known.items():
        for target, line in imports(path, name):
            while target not in known:
                target = target.rpartition(".")[0]
            if target != name:
                edges[name].add((target, line))
    return edges


def layer(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def test_every_import_points_down_the_layers():
    known = {layer(m) for m in modules()}
    assert known == set(LAYERS), f"layers unlisted here: {sorted(known - set(LAYERS))}; listed but gone: {sorted(set(LAYERS) - known)}"
    upward = [f"{module} (line {line}) imports {target}" for module, targets in graph().items() for target, line in targets
              if LAYERS.index(layer(target)) > LAYERS.index(layer(module))]
    assert not upward, "imports against the layer order:\n" + "\n".join(sorted(upward))


def test_no_module_imports_itself_back():
    edges = {module: {target for target, _ in targets} for module, targets in graph().items()}
    cycles, index, low, stack = [], {}, {}, []

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in modules():
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


def test_imports_are_found_at_any_depth_and_relative_ones_resolved(tmp_path):
    path = tmp_path / "errors.py"
    path.write_text("import numpy\nfrom rsdistill.cli import main\n\ndef f():\n    from .tasks import loading\n")
    assert imports(path, "rsdistill.errors") == [("rsdistill.cli.main", 2), ("rsdistill.tasks.loading", 5)]
    assert LAYERS.index(layer("rsdistill.cli.main")) > LAYERS.index(layer("rsdistill.errors"))  # would be reported


def test_the_linter_passes():
    root = SRC.parent
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "src", "tests", "benchmarks"], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]
