"""The package stays small and layered: short modules, and an import graph without cycles."""
import ast
import sys
from pathlib import Path

import pytest

import fmlbd
from fmlbd import checks, data, meta, registry, splits
from fmlbd.attention import KERNELS

PACKAGE = Path(fmlbd.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every fmlbd module ``path`` imports, at the top or inside functions (parents included:
    importing ``fmlbd.a.b`` runs ``fmlbd.a`` first)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    known = {module_name(p) for p in MODULES}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for t in targets:
            while t:
                if t in known and t != name:
                    found.add(t)
                t = t.rpartition(".")[0]
    return found


def test_no_module_is_over_300_lines():
    long = {module_name(p): n for p in MODULES if (n := len(p.read_text().splitlines())) > 300}
    assert not long, long


def test_import_graph_is_acyclic():
    graph = {module_name(p): imports(p) for p in MODULES}
    assert "fmlbd.matching" in graph["fmlbd.meta"] and "fmlbd.experiments.spec" in graph["fmlbd.registry"]
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])


def test_the_cycle_check_finds_a_function_local_cycle(tmp_path, monkeypatch):
    a = tmp_path / "fmlbd" / "a.py"
    a.parent.mkdir()
    a.write_text("def f():\n    from .b import g\n")
    (tmp_path / "fmlbd" / "b.py").write_text("from . import a\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "fmlbd")
    monkeypatch.setattr(sys.modules[__name__], "MODULES", sorted((tmp_path / "fmlbd").glob("*.py")))
    assert imports(a) == {"fmlbd.b"} and imports(tmp_path / "fmlbd" / "b.py") == {"fmlbd.a"}


def test_choices_are_defined_once():
    assert tuple(meta.META_STEPS) == checks.ALGORITHMS and KERNELS == checks.KERNELS
    assert tuple(data.OMNIGLOT_SOURCES) == checks.OMNIGLOT_SOURCES and splits.CASES == checks.CASES
    assert all(e.command in ("attack", "defend") for e in registry.EXPERIMENTS.values())
    assert all(set(e.cases) <= set(checks.CASES) for e in registry.EXPERIMENTS.values())
