"""What an experiment is (:class:`Experiment`) and the skeleton most of them share (:func:`per_case`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from ..config import ExperimentConfig
from ..runner import Table, run
from ..splits import CASES

Run = Callable[[ExperimentConfig, Sequence[str], bool], pd.DataFrame]


@dataclass(frozen=True)
class Experiment:
    """One experiment of the series.

    run(cfg, cases, progress) -> tidy table (one ``value`` per row, ``metric`` names it);
    figure(table, cfg, path) draws it (PNG + SVG at ``path``); headlines(table, cfg) -> the
    numbers a notebook records for the series summary. ``index``: the columns the CLI prints the
    table by (pivoted by metric; empty: printed as is). ``command``: the CLI command that runs it
    ("attack" or "defend"); ``default``: run by that command when no experiment is named.
    """

    name: str
    command: str
    summary: str
    run: Run
    cases: tuple[str, ...] = CASES
    index: tuple[str, ...] = ("case",)
    figure: Callable[[pd.DataFrame, ExperimentConfig, Path | None], object] | None = None
    headlines: Callable[[pd.DataFrame, ExperimentConfig], dict[str, float]] | None = None
    default: bool = True

    def __call__(self, cfg: ExperimentConfig, cases: Sequence[str] | None = None, progress: bool = True):
        """The experiment's table for ``cases`` (default: the spec's)."""
        return self.run(cfg, tuple(cases or self.cases), progress)

    def show(self, table: pd.DataFrame) -> pd.DataFrame:
        """The table as the CLI and notebooks print it."""
        if not self.index:
            return table
        return table.pivot_table(index=list(self.index), columns="metric", values="value", sort=False).round(3)


def check_cases(cases: Sequence[str]) -> tuple[str, ...]:
    bad = [c for c in cases if c not in CASES]
    if not cases or bad:
        raise ValueError(f"cases must be some of {', '.join(CASES)}; got {list(cases)}")
    return tuple(cases)


def per_case(cfg: ExperimentConfig, cases: Sequence[str], progress: bool, name: str,
             compute: Callable[[Any, str], pd.DataFrame], stage: str = "attacked", **key: object) -> pd.DataFrame:
    """The skeleton of a per-case experiment: the table ``name`` of each case, ``compute(result, case)``
    of the result of ``stage`` (:data:`fmlbd.runner.STAGES`; default: the attack), cached under the
    case and ``key`` (:func:`fmlbd.runner.run`)."""
    tables = [Table(name, stage, cfg, case, compute, {"case": case} | key) for case in check_cases(cases)]
    return pd.concat(run(tables, progress), ignore_index=True)
