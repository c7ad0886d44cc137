"""Cache keys by construction: a cached table is keyed by the whole config and by the code that computes it."""
import functools

import pandas as pd

from fmlbd import cache, codebase
from fmlbd.config import with_overrides
from fmlbd.experiments import spec
from tests.helpers import smoke


def test_the_code_digest_ignores_docstrings_comments_and_layout_but_not_code():
    base = codebase.code_digest('"""Module."""\ndef f(x):\n    """Twice x."""\n    return 2 * x\n')
    assert codebase.code_digest("def f(x):  # a comment\n    return (2\n            * x)\n") == base
    assert codebase.code_digest('def f(x):\n    """Another doc."""\n    return 2 * x\n') == base
    assert codebase.code_digest("def f(x):\n    return 3 * x\n") != base
    assert codebase.code_digest("def f(x):\n    return x * 2\n") != base


def test_a_code_version_covers_the_module_and_what_it_imports_only(tmp_path):
    package = tmp_path / "fmlbd"
    (package / "experiments").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "experiments" / "__init__.py").write_text("")
    (package / "low.py").write_text("def g():\n    return 1\n")
    (package / "other.py").write_text("def h():\n    return 2\n")
    (package / "experiments" / "table.py").write_text("def f():\n    from ..low import g  # inside a function\n"
                                                      "    return g()\n")
    before = codebase.version_of("fmlbd.experiments.table", package)
    (package / "other.py").write_text("def h():\n    return 3\n")  # not imported by the table's module
    assert codebase.version_of("fmlbd.experiments.table", package) == before
    (package / "low.py").write_text('"""Documented."""\ndef g():\n    return 1  # same code\n')
    assert codebase.version_of("fmlbd.experiments.table", package) == before
    (package / "low.py").write_text("def g():\n    return 10\n")  # imported code changes what is computed
    assert codebase.version_of("fmlbd.experiments.table", package) != before


def test_the_experiments_code_version_reaches_the_science_below_it():
    graph = codebase.import_graph()
    reached = codebase.reached("fmlbd.experiments.server", graph)
    assert {"fmlbd.pipeline", "fmlbd.federated", "fmlbd.aggregation", "fmlbd.meta", "fmlbd.metrics",
            "fmlbd.evaluation", "fmlbd.data"} <= reached
    assert "fmlbd.cli" not in reached and "fmlbd.report" not in reached


def table_of_curve_episodes(cfg) -> pd.DataFrame:
    """A table that reads a setting (``measure.curve_episodes``) no caller lists."""
    return pd.DataFrame({"value": [float(cfg.measure.curve_episodes)]})


def tables_on_disk(cfg) -> list:
    return sorted((cache.cache_dir(cfg) / "tables").glob("demo-*.csv"))


def test_a_setting_the_table_reads_changes_its_key_and_its_table(omniglot_root, tmp_path):
    cfg = smoke(omniglot_root, tmp_path)
    first = cache.cached_table(cfg, "demo", {}, functools.partial(table_of_curve_episodes, cfg))
    other = with_overrides(cfg, {"measure.curve_episodes": cfg.measure.curve_episodes + 1})
    second = cache.cached_table(other, "demo", {}, functools.partial(table_of_curve_episodes, other))
    assert first["value"].item() == cfg.measure.curve_episodes and second["value"].item() == first["value"].item() + 1
    assert len(tables_on_disk(cfg)) == 2  # two keys
    again = cache.cached_table(other, "demo", {}, lambda: pd.DataFrame({"value": [-1.0]}))  # other code: other key
    assert again["value"].item() == -1.0 and len(tables_on_disk(cfg)) == 3
    moved = with_overrides(cfg, {"results_dir": str(tmp_path / "elsewhere"), "shipped_models": False})  # not computed
    assert cache.config_parts(moved) == cache.config_parts(cfg)


def test_a_table_computed_in_fmlbd_is_keyed_by_its_module_code_version():
    assert cache.computed_by(spec.check_cases) == codebase.code_version("fmlbd.experiments.spec")
    assert cache.computed_by(functools.partial(spec.check_cases, ("a",))) == cache.computed_by(spec.check_cases)
    assert cache.computed_by(table_of_curve_episodes) != cache.computed_by(tables_on_disk)  # outside fmlbd: its source
