"""The package read as code: which fmlbd modules a module imports, and a version of the code a
computation runs, for cache keys.

:func:`code_version` hashes the syntax trees (docstrings left out; comments and layout are not in a
tree) of a module and of every fmlbd module it imports, directly or not, at the top or inside a
function. A cached result keyed by it is recomputed after any change to that code, and only to
that code: a docstring, a comment or a line wrap changes no key.
"""
from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = Path(__file__).parent


def module_name(path: Path, package: Path = PACKAGE) -> str:
    """``fmlbd.a.b`` for ``<package>/a/b.py`` (a package's ``__init__.py``: the package's name)."""
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of ``package``: ``{name: path}``."""
    return {module_name(p, package): p for p in sorted(package.rglob("*.py"))}


def imports(path: Path, known: set[str], package: Path = PACKAGE) -> set[str]:
    """Every module of ``known`` that the module at ``path`` imports, at the top or inside functions
    (parents included: importing ``fmlbd.a.b`` runs ``fmlbd.a`` first)."""
    name = module_name(path, package)
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[:len(here.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for t in targets:
            while t:
                if t in known and t != name:
                    found.add(t)
                t = t.rpartition(".")[0]
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """``{module: the modules it imports}`` for every module of ``package``."""
    found = modules(package)
    return {name: imports(path, set(found), package) for name, path in found.items()}


def reached(module: str, graph: dict[str, set[str]]) -> set[str]:
    """``module`` and every module it imports, directly or through others."""
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += graph[m]
    return seen


def code_digest(source: str) -> str:
    """A hash of ``source``'s syntax tree without its docstrings."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()


def version_of(module: str, package: Path = PACKAGE) -> str:
    """12 hex digits: :func:`code_digest` of ``module`` and of every module it reaches (:func:`reached`)."""
    paths = modules(package)
    parts = [(m, code_digest(paths[m].read_text())) for m in sorted(reached(module, import_graph(package)))]
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


@functools.cache
def installed_modules() -> frozenset[str]:
    """The names of the installed package's modules (listed once per process, like :func:`code_version`)."""
    return frozenset(modules())


@functools.cache
def code_version(module: str) -> str:
    """:func:`version_of` the installed package's ``module`` (computed once per process: the code
    of a running process does not change)."""
    return version_of(module)
