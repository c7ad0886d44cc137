"""Tidy result tables and cache files: written atomically, read back only when whole.

Every write goes to a uniquely named temporary file beside its target and is renamed into place,
so an interruption, or two processes writing the same file, never leave a partial file under
the final name. A table is saved with ``<name>.meta.json`` (config, seed, versions, row count
and SHA-256 of the CSV bytes), and :func:`load_table` refuses a table that does not match it.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import platform
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd
import torch

from .errors import CacheError


def environment_info() -> dict[str, str]:
    """Versions that affect numbers."""
    import numpy

    from . import __version__

    return {"fmlbd": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "threads": str(torch.get_num_threads())}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[io.IOBase], None]) -> Path:
    """Call ``write(binary file)`` on a fresh temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide a shared cache from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` so that an interruption never leaves a half-written file at ``path``."""
    atomic_write(path, lambda f: torch.save(obj, f))


def write_json(obj: Any, path: Path) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
    atomic_write(path, lambda f: f.write(text))


def load_torch(path: str | Path) -> Any:
    """A file saved by :func:`atomic_torch_save`, loaded with ``torch.load(weights_only=True)``: tensors,
    numbers, strings and containers of them, never code. :class:`CacheError` naming the file and the fix
    if it cannot be read (truncated, not a torch file) or holds anything else (a pickled object that
    could run code when loaded: it is not loaded)."""
    path = Path(path)
    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err):  # torch's unpickler met something it will not build
            found = re.search(r"GLOBAL (\S+)", str(err))
            what = found.group(1) if found else "an object"
            raise CacheError(f"{path} holds {what}, not only tensors and plain values: not loaded (loading it "
                             f"could run code). Delete it (rm {path}) and rerun to recompute it, or reinstall "
                             f"fmlbd if it is one of its shipped models") from None
        raise _unreadable(path, err) from None
    except Exception as err:
        raise _unreadable(path, err) from None


@contextmanager
def cache_contents(path: str | Path) -> Iterator[None]:
    """Around the lines that take a loaded cache file apart: a missing key or a value of another type
    there is the file's fault (cut, hand-edited, from another tool), reported as :class:`CacheError`
    naming the file and the fix, not as a traceback."""
    try:
        yield
    except (KeyError, TypeError, IndexError) as err:
        raise CacheError(f"{path} does not hold what fmlbd saves there ({type(err).__name__}: {err}): it is a "
                         f"cache file; delete it (rm {path}) and rerun to recompute it") from None


def _unreadable(path: Path, err: Exception) -> CacheError:
    reason = str(err).splitlines()[0].split(". ")[0][:120]  # torch's first sentence says what broke
    return CacheError(f"{path} is unreadable ({type(err).__name__}: {reason}): it is a "
                      f"cache file; delete it (rm {path}) and rerun to recompute it")


def save_table(table: pd.DataFrame, path: str | Path, config: dict, **extra: Any) -> Path:
    """Write ``table`` as CSV and, beside it, ``<name>.meta.json`` with config, seed, versions, and the
    row count and SHA-256 of the CSV (both files atomically; the metadata last)."""
    path = Path(path)
    data = table.to_csv(index=False).encode()
    atomic_write(path, lambda f: f.write(data))
    write_json({"config": config, "seed": config.get("seed"), "environment": environment_info(),
                "saved": time.strftime("%Y-%m-%dT%H:%M:%S"), "rows": len(table),
                "sha256": hashlib.sha256(data).hexdigest(), **extra}, path.with_suffix(".meta.json"))
    return path


def load_table(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """A table saved by :func:`save_table` and its metadata; :class:`CacheError` if either file is
    missing or unreadable, or the CSV is not the one the metadata describes (cut or changed)."""
    path = Path(path)
    meta_path = path.with_suffix(".meta.json")
    fix = f"delete {path} and {meta_path.name} and rerun to recompute the table"
    try:
        data = path.read_bytes()
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        raise CacheError(f"{path}: cannot read the table or its metadata ({err}); {fix}") from None
    if meta.get("sha256") != hashlib.sha256(data).hexdigest():
        raise CacheError(f"{path} does not match its {meta_path.name} (cut, changed or from an older version); {fix}")
    return pd.read_csv(io.BytesIO(data)), meta


def first_below(table: pd.DataFrame, x: str, metric: str, threshold: float) -> dict[str, float]:
    """Per case, the first ``x`` (round / step) at which ``metric`` is below ``threshold``;
    NaN when it never is within the table."""
    out = {}
    for case, sub in table[table["metric"] == metric].groupby("case"):
        below = sub[sub["value"] < threshold].sort_values(x)
        out[case] = float(below[x].iloc[0]) if len(below) else float("nan")
    return out
