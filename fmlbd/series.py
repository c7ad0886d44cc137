"""Where the notebook series lives (no heavy imports: the command line checks ``--only`` with it)."""
from __future__ import annotations

from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def series(notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """The numbered notebooks of the series, in order."""
    return sorted(Path(notebook_dir).glob("[0-9][0-9]_*.ipynb"))
