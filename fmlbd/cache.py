"""The pipeline's cache: one key scheme built from whole config sections, and cached tables.

A cache key is a short hash of whole config sections (never of chosen fields) plus what the
config does not hold (e.g. the class assignment, the cache folder of the model a result starts
from). ``data.root`` is left out: where the data lives does not change it, so every command and
notebook shares one cache; so are the settings of the aggregation rules not in use
(:func:`fmlbd.rule_settings.read_by_rule`): a rule added to the registry changes no key.

A cached table (:func:`cached_table`) is keyed by the whole config (:func:`config_parts`), so a
setting its computation reads cannot be left out, and by the :func:`~fmlbd.codebase.code_version`
of the module that computes it, so a change to that code, or to any fmlbd module it imports,
computes the table anew.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import warnings
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from .codebase import code_version, installed_modules
from .results import CacheError, load_table, save_table
from .rule_settings import read_by_rule


def key_of(parts: Any) -> str:
    """Short stable hash of JSON-able ``parts``."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


#: top-level config fields that say where results go and whether to use shipped models, not what is computed
NOT_COMPUTED = ("results_dir", "shipped_models")


def config_parts(cfg) -> dict[str, Any]:
    """The whole config as keys see it: :func:`sections` of every field but :data:`NOT_COMPUTED`."""
    return sections(cfg, *(n for n in cfg.to_dict() if n not in NOT_COMPUTED))


def sections(cfg, *names: str) -> dict[str, Any]:
    """The named config sections (or top-level fields, e.g. "seed") as plain dicts, ``data.root`` and
    the settings of the aggregation rules not in use left out."""
    d = cfg.to_dict()
    out = {n: d[n] for n in names}
    if "data" in out:
        out["data"] = {k: v for k, v in out["data"].items() if k != "root"}
    if "federation" in out:
        out["federation"] = read_by_rule(out["federation"])
    return out


def cache_key(cfg, *names: str, **extra: Any) -> str:
    """:func:`key_of` the named whole sections of ``cfg`` and ``extra``."""
    return key_of(sections(cfg, *names) | extra)


def cache_dir(cfg) -> Path:
    return Path(cfg.results_dir) / "cache"


def computed_by(compute: Callable) -> str:
    """The code version of ``compute`` (a function or a :func:`functools.partial` of one): the
    :func:`~fmlbd.codebase.code_version` of its fmlbd module, or a hash of its own source if it is
    defined outside fmlbd."""
    fn = getattr(compute, "func", compute)
    if fn.__module__ in installed_modules():
        return code_version(fn.__module__)
    return hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:12]


def cached_table(cfg, name: str, key: dict, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """Table ``name`` saved for the whole config (:func:`config_parts`), the code that computes it
    (:func:`computed_by`) and ``key`` (what the config does not hold), or ``compute()`` it and save it
    (with config and seed). A saved table that is cut or unreadable is recomputed, with a warning that
    names it."""
    full = {"config": config_parts(cfg), "code": computed_by(compute)} | key
    path = cache_dir(cfg) / "tables" / f"{name}-{key_of(full)}.csv"
    if path.is_file():
        try:
            return load_table(path)[0]
        except CacheError as err:
            warnings.warn(f"{err} (recomputing it now)", stacklevel=2)
    table = compute()
    save_table(table, path, cfg.to_dict(), key=key, code=full["code"])
    return table
