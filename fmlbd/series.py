"""Where the notebook series lives (no heavy imports: the command line checks ``--only`` with it):
inside an installed fmlbd (``fmlbd/notebooks``, carried by the wheel) or in a source checkout
(``notebooks/`` beside the ``fmlbd/`` package)."""
from __future__ import annotations

import shutil
from pathlib import Path

_INSTALLED = Path(__file__).resolve().parent / "notebooks"
NOTEBOOK_DIR = _INSTALLED if _INSTALLED.is_dir() else Path(__file__).resolve().parents[1] / "notebooks"


def series(notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """The numbered notebooks of the series, in order."""
    return sorted(Path(notebook_dir).glob("[0-9][0-9]_*.ipynb"))


def write_notebooks(target: str | Path, overwrite: bool = False) -> list[Path]:
    """Copy the series and its solutions (``solutions/``) into ``target``; refuses to replace a
    notebook already there unless ``overwrite`` (it may hold a learner's answers). Returns the files written."""
    target = Path(target)
    sources = series() + sorted((NOTEBOOK_DIR / "solutions").glob("*.ipynb"))
    pairs = [(src, target / src.relative_to(NOTEBOOK_DIR)) for src in sources]
    existing = [str(dst) for _, dst in pairs if dst.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} (and {len(existing) - 1} more) already exist: choose another "
                              f"folder, or pass --overwrite to replace them (answers in them are lost)")
    for src, dst in pairs:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return [dst for _, dst in pairs]
