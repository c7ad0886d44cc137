"""Where a notebook's data, results and outputs live, wherever the notebook sits.

A folder given explicitly (a papermill parameter, ``reproduce``) is used as is. Otherwise, in
this order: the environment variables ``FMLBD_DATA`` / ``FMLBD_RESULTS`` / ``FMLBD_OUTPUTS``;
the fmlbd checkout the notebook sits in (its ``data/``, ``results/`` and ``outputs/<profile>``);
else a per-user folder, ``$XDG_DATA_HOME/fmlbd`` (default ``~/.local/share/fmlbd``), for data and
results, and ``outputs/<profile>`` beside the notebook. The Omniglot zips a profile needs are
downloaded into the data folder when missing, and MD5-checked either way.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .data import DatasetError, download_omniglot, omniglot_zip_paths


def checkout(start: str | Path | None = None) -> Path | None:
    """The fmlbd source checkout holding ``start`` (default: the working directory), or None."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        project = folder / "pyproject.toml"
        if project.is_file() and re.search(r'^name\s*=\s*"fmlbd"', project.read_text(), re.M):
            return folder
    return None


def user_folder() -> Path:
    """The per-user folder of data and results: ``$XDG_DATA_HOME/fmlbd`` or ``~/.local/share/fmlbd``."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "fmlbd"


def _resolve(given, variable: str, in_checkout: str, elsewhere: Path) -> Path:
    if given not in (None, ""):
        return Path(given)
    if os.environ.get(variable):
        return Path(os.environ[variable])
    root = checkout()
    return root / in_checkout if root is not None else elsewhere


def folders(data_root=None, results_dir=None, output_dir=None, profile: str = "quick",
            dataset: str = "omniglot") -> tuple[Path, Path, Path]:
    """``(data_root, results_dir, output_dir)`` of a notebook (see the module's docstring): each one
    given is kept, each None is resolved. For Omniglot, the zips of ``profile``'s source are fetched
    into the data folder when missing (a one-line error if that is impossible)."""
    data = _resolve(data_root, "FMLBD_DATA", "data", user_folder() / "data")
    results = _resolve(results_dir, "FMLBD_RESULTS", "results", user_folder() / "results")
    outputs = _resolve(output_dir, "FMLBD_OUTPUTS", f"outputs/{profile}", Path("outputs") / profile)
    if dataset == "omniglot":
        ensure_omniglot(data, profile)
    return data, results, outputs


def ensure_omniglot(root: str | Path, profile: str = "quick") -> list[Path]:
    """The MD5-checked Omniglot zips of ``profile``'s source in ``<root>/omniglot``, downloaded first if missing."""
    from .config import load_config

    source = load_config(profile).data.source
    try:
        return omniglot_zip_paths(root, source)
    except DatasetError:
        pass
    print(f"Omniglot ({source}) is not in {Path(root).resolve()}: downloading it (MD5-checked)")
    try:
        return download_omniglot(root, source)
    except DatasetError:
        raise
    except Exception as err:  # no network, a proxy, a full disk: one line that says what to do
        raise DatasetError(f"Omniglot ({source}) is missing from {Path(root).resolve()}/omniglot and could not be "
                           f"downloaded ({type(err).__name__}: {err}); copy its zips there (see data/README.md) or "
                           f"set data_root (or FMLBD_DATA) to a folder that holds them") from None
