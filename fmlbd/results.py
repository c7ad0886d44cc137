"""Tidy result tables and on-disk caches, always saved with the config, seed and versions that made them."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch


def environment_info() -> dict[str, str]:
    """Versions that affect numbers."""
    import numpy

    from . import __version__

    return {"fmlbd": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "threads": str(torch.get_num_threads())}


def key_of(parts: Any) -> str:
    """Short stable hash of JSON-able ``parts`` (cache keys cover configs and data, not code)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Save so that an interruption never leaves a half-written file at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_json(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def save_table(table: pd.DataFrame, path: str | Path, config: dict, **extra: Any) -> Path:
    """Write ``table`` as CSV and, beside it, ``<name>.meta.json`` with config, seed and versions."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    write_json({"config": config, "seed": config.get("seed"), "environment": environment_info(),
                "saved": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}, path.with_suffix(".meta.json"))
    return path


def load_table(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """A table saved by :func:`save_table` and its metadata."""
    path = Path(path)
    return pd.read_csv(path), json.loads(path.with_suffix(".meta.json").read_text())


def first_below(table: pd.DataFrame, x: str, metric: str, threshold: float) -> dict[str, float]:
    """Per case, the first ``x`` (round / step) at which ``metric`` is below ``threshold``;
    NaN when it never is within the table."""
    out = {}
    for case, sub in table[table["metric"] == metric].groupby("case"):
        below = sub[sub["value"] < threshold].sort_values(x)
        out[case] = float(below[x].iloc[0]) if len(below) else float("nan")
    return out
