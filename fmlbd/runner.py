"""Running experiments: what is missing is computed side by side, then each table loaded or computed.

An experiment is a list of :class:`Table` s, each a plain function ``compute(result, case) ->
table`` of the result of one pipeline stage (:data:`STAGES`: a pre-trained model, an attack, the
rounds after it) for one config and case. :func:`run` schedules the rest: the missing stage results
(and the models they start from) side by side (:mod:`fmlbd.workers`, one single-thread process per
core), then each table read from the cache or computed (:func:`fmlbd.cache.cached_table`: keyed by
the whole config, the code that computes it and the stage result it reads).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import pandas as pd

from .cache import cached_table
from .config import ExperimentConfig
from .pipeline import Attacked, attack, dampening_snapshots, pretrain
from .workers import cache_side_by_side, pretrain_jobs


class Dampened(NamedTuple):
    """The attack and the global models of the benign rounds after it (:func:`~fmlbd.pipeline.dampening_snapshots`)."""

    attacked: Attacked
    snapshots: dict


def _dampened(cfg: ExperimentConfig, case: str, progress: bool) -> Dampened:
    attacked = attack(cfg, case, progress)
    return Dampened(attacked, dampening_snapshots(cfg, case, progress, attacked))


@dataclass(frozen=True)
class Stage:
    """A cached pipeline stage: ``load(cfg, case, progress)`` gives its result; ``prepare(jobs, progress)``
    computes the missing results of ``(config, case)`` jobs side by side; ``key(result)`` names it."""

    load: Callable[[ExperimentConfig, str, bool], Any]
    prepare: Callable[[list, bool], None]
    key: Callable[[Any], dict]


STAGES: dict[str, Stage] = {
    "pretrained": Stage(pretrain, pretrain_jobs, lambda trained: {"model": trained.path.name}),
    "attacked": Stage(attack, partial(cache_side_by_side, attack), lambda att: {"attack": att.path.name}),
    "dampened": Stage(_dampened, partial(cache_side_by_side, dampening_snapshots),
                      lambda d: {"attack": d.attacked.path.name}),
}


@dataclass(frozen=True)
class Table:
    """Table ``name`` of ``case``: ``compute(result, case)``, ``result`` being stage ``stage`` of
    ``stage_cfg`` (default ``cfg``). Cached under ``cfg`` (the config ``compute`` reads), the stage
    result and ``key`` (what neither holds; give the case when the table depends on it)."""

    name: str
    stage: str
    cfg: ExperimentConfig
    case: str
    compute: Callable[[Any, str], pd.DataFrame]
    key: dict = field(default_factory=dict)
    stage_cfg: ExperimentConfig | None = None

    @property
    def runs(self) -> ExperimentConfig:
        return self.cfg if self.stage_cfg is None else self.stage_cfg


def prepare(jobs: Iterable[tuple[str, ExperimentConfig, str]], progress: bool = True) -> None:
    """Compute the missing results of ``(stage, config, case)`` jobs side by side, the highest stage
    first (each computes the missing results it starts from)."""
    by_stage: dict[str, list] = {name: [] for name in STAGES}
    for stage, cfg, case in jobs:
        by_stage[stage].append((cfg, case))
    for name in reversed(STAGES):
        if by_stage[name]:
            STAGES[name].prepare(by_stage[name], progress)


def run(tables: Sequence[Table], progress: bool = True) -> list[pd.DataFrame]:
    """Every table of ``tables``, in order: :func:`prepare` their stages, then load or compute each."""
    prepare([(t.stage, t.runs, t.case) for t in tables], progress)
    out, loaded = [], {}
    for t in tables:
        stage, job = STAGES[t.stage], (t.stage, t.runs, t.case)  # configs are frozen, hashable
        if job not in loaded:  # tables of one stage result load it once
            loaded[job] = stage.load(t.runs, t.case, progress)
        result = loaded[job]
        out.append(cached_table(t.cfg, t.name, stage.key(result) | t.key, partial(t.compute, result, t.case)))
    return out
