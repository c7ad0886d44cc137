"""The package stays small and layered: short modules, and an import graph without cycles."""
import ast
import sys
from pathlib import Path

import pytest

import fmlbd
from fmlbd import checks, codebase, data, meta, registry, splits
from fmlbd.attention import KERNELS

PACKAGE = Path(fmlbd.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    return codebase.module_name(path, PACKAGE)


def imports(path: Path) -> set[str]:
    """Every fmlbd module ``path`` imports (:func:`fmlbd.codebase.imports`)."""
    return codebase.imports(path, {module_name(p) for p in MODULES}, PACKAGE)


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


#: the package's layers, lowest first (README's flow: config -> data -> episodes -> local training ->
#: server -> metrics -> results -> plots, with the helpers beneath and the entry points on top): a
#: module imports only modules of its own layer or a lower one, at the top or inside a function
LAYERS: dict[str, set[str]] = {
    "helpers": {"fmlbd", "fmlbd.errors", "fmlbd.checks", "fmlbd.functional", "fmlbd.streams", "fmlbd.results",
                "fmlbd.cache", "fmlbd.parallel", "fmlbd.answers", "fmlbd.hygiene", "fmlbd.series",
                "fmlbd.rule_settings", "fmlbd.labels", "fmlbd.codebase"},
    "config": {"fmlbd.config"},
    "data": {"fmlbd.data", "fmlbd.paths", "fmlbd.episodes", "fmlbd.splits", "fmlbd.backdoor"},
    "local training": {"fmlbd.models", "fmlbd.attention", "fmlbd.matching", "fmlbd.meta", "fmlbd.defense",
                       "fmlbd.evasion", "fmlbd.clients"},
    "server": {"fmlbd.aggregation", "fmlbd.federated"},
    "wiring": {"fmlbd.builders"},
    "metrics": {"fmlbd.metrics", "fmlbd.evaluation", "fmlbd.fingerprint"},
    "pipeline": {"fmlbd.shipped", "fmlbd.pipeline", "fmlbd.workers", "fmlbd.runner", "fmlbd.walkthrough"},
    "plots": {"fmlbd.plots", "fmlbd.mechanism_plots"},
    "experiments": {"fmlbd.experiments", "fmlbd.experiments.spec", "fmlbd.experiments.attack",
                    "fmlbd.experiments.persistence", "fmlbd.experiments.defense", "fmlbd.experiments.server",
                    "fmlbd.registry"},
    "flower": {"fmlbd.flower", "fmlbd.flower.records", "fmlbd.flower.coordinator", "fmlbd.flower.client_app",
               "fmlbd.flower.faulty_client", "fmlbd.flower.server_app", "fmlbd.flower.simulation",
               "fmlbd.flower.credentials", "fmlbd.flower.deployment", "fmlbd.flower.gate"},
    "teaching": {"fmlbd.report", "fmlbd.exercises", "fmlbd.site", "fmlbd.reproduce", "fmlbd.lab", "fmlbd.lab.grading",
                 "fmlbd.lab.tasks", "fmlbd.lab.runs", "fmlbd.lab.assign"},
    "entry points": {"fmlbd.cli", "fmlbd.__main__", "fmlbd.flower.__main__"},
}


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Every import in ``graph`` (module -> modules it imports) of a module from a higher layer."""
    rank = {m: i for i, members in enumerate(LAYERS.values()) for m in members}
    names = list(LAYERS)
    return [f"{m} ({names[rank[m]]}) imports {t} ({names[rank[t]]})"
            for m, targets in sorted(graph.items()) for t in sorted(targets) if rank[t] > rank[m]]


def test_every_module_has_one_layer():
    listed = [m for members in LAYERS.values() for m in members]
    assert sorted(listed) == sorted(module_name(p) for p in MODULES), \
        "add the new module to LAYERS (or remove the one that is gone)"


def test_no_module_imports_from_a_higher_layer():
    bad = upward({module_name(p): imports(p) for p in MODULES})
    assert not bad, bad


def test_the_layer_check_finds_a_planted_upward_import(tmp_path, monkeypatch):
    package = tmp_path / "fmlbd"
    package.mkdir()
    planted = "\n\ndef f():\n    from .pipeline import pretrain\n"  # an upward import inside a function
    (package / "data.py").write_text((PACKAGE / "data.py").read_text() + planted)
    (package / "pipeline.py").write_text((PACKAGE / "pipeline.py").read_text())
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    monkeypatch.setattr(sys.modules[__name__], "MODULES", sorted(package.glob("*.py")))
    graph = {module_name(p): imports(p) for p in MODULES}
    assert upward(graph) == ["fmlbd.data (data) imports fmlbd.pipeline (pipeline)"]


def test_experiments_leave_scheduling_and_caching_to_the_runner():
    """Experiments list their tables; fmlbd.runner computes what is missing side by side and caches."""
    graph = {module_name(p): imports(p) for p in MODULES}
    orchestration = {"fmlbd.workers", "fmlbd.cache", "fmlbd.parallel"}
    science = [m for m in graph if m.startswith("fmlbd.experiments")]
    # pmap within a computation: the episodes of one table side by side, summed in order (same numbers)
    assert {m: sorted(graph[m] & orchestration) for m in science if graph[m] & orchestration} == {
        "fmlbd.experiments.defense": ["fmlbd.parallel"], "fmlbd.experiments.persistence": ["fmlbd.parallel"]}


def test_choices_are_defined_once():
    assert tuple(meta.META_STEPS) == checks.ALGORITHMS and KERNELS == checks.KERNELS
    assert tuple(data.OMNIGLOT_SOURCES) == checks.OMNIGLOT_SOURCES and splits.CASES == checks.CASES
    assert all(e.command in ("attack", "defend") for e in registry.EXPERIMENTS.values())
    assert all(set(e.cases) <= set(checks.CASES) for e in registry.EXPERIMENTS.values())


def imported_test_modules(paths) -> list[str]:
    """``file imports tests.test_x`` for every file of ``paths`` that imports a test module."""
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or "", *(a.name for a in node.names)] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.name} imports {n}" for n in names if n.split(".")[-1].startswith("test_")]
    return found


def test_no_test_module_is_imported_by_another_or_by_a_benchmark(tmp_path):
    root = PACKAGE.parent
    paths = [*(root / "tests").glob("*.py"), *(root / "benchmarks").glob("*.py"), *(root / "scripts").glob("*.py")]
    assert imported_test_modules(paths) == []  # shared helpers live in tests/helpers.py and tests/conftest.py
    planted = tmp_path / "bench.py"
    planted.write_text("from tests.test_bad_input import CLI_PROBES\nfrom tests import test_meta\nfrom . import test_data\n")
    assert imported_test_modules([planted]) == ["bench.py imports tests.test_bad_input", "bench.py imports test_meta",
                                                "bench.py imports test_data"]


def test_every_subpackage_travels_in_the_wheel():
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {module_name(p) for p in MODULES if p.name == "__init__.py"}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"
