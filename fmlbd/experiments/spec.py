"""What an experiment is (:class:`Experiment`) and the skeleton most of them share (:func:`per_case`)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from ..cache import cached_table
from ..config import ExperimentConfig
from ..pipeline import Attacked, attack
from ..splits import CASES
from ..workers import cache_side_by_side

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
             compute: Callable[[Attacked, str], pd.DataFrame], **key: object) -> pd.DataFrame:
    """The skeleton of a per-case experiment: the missing pre-trained models and attacks computed side
    by side (:func:`~fmlbd.workers.cache_side_by_side`), then per case load the attack and load or
    ``compute(attacked, case)`` the cached table ``name`` (:func:`~fmlbd.cache.cached_table`: keyed by
    the whole config and ``compute``'s code), keyed also by the attack, the case and ``key``."""
    cases = check_cases(cases)
    cache_side_by_side(attack, [(cfg, case) for case in cases], progress)
    tables = []
    for case in cases:
        att = attack(cfg, case, progress)
        tables.append(cached_table(cfg, name, {"attack": att.path.name, "case": case} | key,
                                   partial(compute, att, case)))
    return pd.concat(tables, ignore_index=True)
