"""The pipeline's cache: one key scheme built from whole config sections, and cached tables.

A cache key is a short hash of whole config sections (never of chosen fields) plus what the
config does not hold (e.g. the class assignment, the cache folder of the model a result starts
from). ``data.root`` is left out: where the data lives does not change it, so every command and
notebook shares one cache; so are the settings of the aggregation rules not in use
(:func:`fmlbd.rule_settings.read_by_rule`): a rule added to the registry changes no key. Keys cover
configs and data, not code: after changing code that alters numbers, delete ``<results_dir>/cache/``.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from .results import CacheError, load_table, save_table
from .rule_settings import read_by_rule


def key_of(parts: Any) -> str:
    """Short stable hash of JSON-able ``parts``."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


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


def cached_table(cfg, name: str, key: dict, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """Table ``name`` saved for ``key``, or ``compute()`` it and save it (with config and seed).
    A saved table that is cut or unreadable is recomputed, with a warning that names it."""
    path = cache_dir(cfg) / "tables" / f"{name}-{key_of(key)}.csv"
    if path.is_file():
        try:
            return load_table(path)[0]
        except CacheError as err:
            warnings.warn(f"{err} (recomputing it now)", stacklevel=2)
    table = compute()
    save_table(table, path, cfg.to_dict(), key=key)
    return table
