"""Scoring a global model: the fixed evaluation episodes of a config and the four metrics of PROTOCOL.md.

Every model compared at a seed is scored on the same episodes (common random numbers), with
standard meta-test fine-tuning or, given an :class:`~fmlbd.attention.Attention`, the local
matching-network classifier.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from .attention import Attention
from .builders import attack_sets, native_attention
from .cache import cache_dir, key_of, sections
from .codebase import code_version
from .config import ExperimentConfig, with_overrides
from .defense import MatchingNetworkDefense
from .functional import Params, zero_head
from .labels import METRICS
from .metrics import (backdoor_episodes, backdoor_scores, episode_accuracies, evaluation_episodes,
                      finetuned_classifier, mean_ci95)
from .results import atomic_write
from .splits import Scenario



def adapter(cfg: ExperimentConfig, model, params: Params, attention: Attention | None = None):
    """``adapt(episode) -> classify``: standard fine-tuning, or the local matching-network defense."""
    if attention is None:
        if cfg.meta.zero_head:  # the head is zero: rebuild it with one output per meta-test class
            params = zero_head(params, cfg.eval.ways)
        return lambda ep: finetuned_classifier(model, params, ep, cfg.eval.finetune_steps, cfg.eval.finetune_lr)
    return lambda ep: MatchingNetworkDefense(model, params, ep.support_x, ep.support_y, attention).predict


def _given(value: int | None, default: int) -> int:
    return default if value is None else value


def main_episodes(cfg: ExperimentConfig, scenario: Scenario, shots: int | None = None,
                  episodes: int | None = None) -> list:
    """The fixed benign meta-test episodes of ``cfg.eval`` (``shots``/``episodes`` override it)."""
    e = cfg.eval
    return evaluation_episodes(scenario.pool, scenario.test_classes, e.ways, _given(shots, e.shots), e.queries,
                               _given(episodes, e.episodes), cfg.seed)


def backdoor_test_episodes(cfg: ExperimentConfig, scenario: Scenario, case: str, shots: int | None = None,
                           episodes: int | None = None) -> list:
    """The fixed meta-test episodes that hold the target class (see :func:`fmlbd.metrics.backdoor_episodes`)."""
    e = cfg.eval
    return backdoor_episodes(scenario.pool, scenario.test_classes, scenario.target_class, scenario.backdoor_classes,
                             case, e.ways, _given(shots, e.shots), e.queries, _given(episodes, e.episodes), cfg.seed,
                             cfg.attack.target_label)


def params_digest(params: Params) -> str:
    """A hash of the weights' values."""
    h = hashlib.sha1()
    for k in sorted(params):
        h.update(k.encode())
        h.update(params[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def attention_key(attention: Attention | None) -> list | None:
    return None if attention is None else [attention.kernel, attention.temperature, attention.k]


def main_task_accuracies(cfg: ExperimentConfig, model, params: Params, scenario: Scenario, shots: int | None = None,
                         episodes: int | None = None, attention: Attention | None = None) -> np.ndarray:
    """Per-episode main-task accuracy ``[episodes]`` on meta-test classes (see :mod:`fmlbd.metrics`).

    Saved under ``<results_dir>/cache/main-task/``, keyed by the weights' values, the episodes, the
    classifier and this code: cases (a) and (c) share their global models and meta-test classes, so
    their main task is evaluated once, in any process."""
    shots, episodes = _given(shots, cfg.eval.shots), _given(episodes, cfg.eval.episodes)
    if shots < 1 or episodes < 1:
        raise ValueError(f"main-task accuracy needs shots >= 1 and episodes >= 1 (got {shots}, {episodes})")
    key = key_of(sections(cfg, "data", "eval", "seed") | {
        "params": params_digest(params), "test": list(scenario.test_classes), "shots": shots, "episodes": episodes,
        "attention": attention_key(attention), "code": code_version(__name__)})
    path = cache_dir(cfg) / "main-task" / f"{key}.npy"
    if path.is_file():
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):  # cut or unreadable: computed again below
            pass
    accs = episode_accuracies(adapter(cfg, model, params, attention), main_episodes(cfg, scenario, shots, episodes))
    atomic_write(path, lambda f: np.save(f, accs, allow_pickle=False))
    return accs


def attack_scores(cfg: ExperimentConfig, model, params: Params, scenario: Scenario, case: str,
                  episodes: int | None = None, attention: Attention | None = None,
                  keyed: bool = True, main_task: bool = True) -> dict[str, np.ndarray]:
    """Per-episode values of the four metrics of PROTOCOL.md for ``params``: ``{metric: [episodes]}``,
    with standard fine-tuning or, given ``attention``, the local matching-network classifier.
    ``keyed=False`` scores the attack images without the key: the rate at which they fall
    on the target class anyway (the chance control for backdoor accuracy). ``main_task=False`` leaves
    out main-task accuracy (half the cost: its own episodes)."""
    out = {"main_task_acc": main_task_accuracies(cfg, model, params, scenario, episodes=episodes, attention=attention)
           } if main_task else {}
    eps = backdoor_test_episodes(cfg, scenario, case, episodes=episodes)
    return out | backdoor_scores(adapter(cfg, model, params, attention), eps, attack_sets(cfg, scenario, keyed),
                                 scenario.target_class, case)


def attack_metrics(cfg: ExperimentConfig, model, params: Params, scenario: Scenario, case: str,
                   episodes: int | None = None, attention: Attention | None = None,
                   keyed: bool = True, main_task: bool = True) -> dict[str, float]:
    """The four metrics of PROTOCOL.md for ``params``: the means over episodes of :func:`attack_scores`."""
    return {m: float(v.mean()) for m, v in
            attack_scores(cfg, model, params, scenario, case, episodes, attention, keyed, main_task).items()}


def scores_table(scores: dict[str, np.ndarray]) -> pd.DataFrame:
    """Mean and 95% CI half-width of each metric of :func:`attack_scores`, one row per metric."""
    rows = {m: dict(zip(("mean", "ci95"), mean_ci95(v)), episodes=len(v)) for m, v in scores.items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("metric")


def metric_rows(case: str, x_name: str, x, metrics: dict[str, float]) -> list[dict]:
    """Tidy rows ``case, <x_name>, metric, value`` of the metrics given (in :data:`METRICS` order)."""
    return [{"case": case, x_name: x, "metric": m, "value": metrics[m]} for m in METRICS if m in metrics]


def main_task_table(cfg: ExperimentConfig, model, params: Params, scenario: Scenario,
                    shots: tuple[int, ...] = (1, 5), ways: tuple[int, ...] | None = None) -> pd.DataFrame:
    """Tidy table of main-task accuracy (mean and 95% CI half-width) for each way and shot count
    (``ways`` None: ``eval.ways``), with the model's native classifier
    (:func:`~fmlbd.builders.native_attention`)."""
    rows = []
    for n in ways or (cfg.eval.ways,):
        at = with_overrides(cfg, {"eval.ways": n})
        for k in shots:
            accs = main_task_accuracies(at, model, params, scenario, shots=k, attention=native_attention(at))
            mean, half = mean_ci95(accs)
            rows.append({"ways": n, "shots": k, "episodes": len(accs), "metric": "main_task_acc",
                         "value": mean, "ci95": half})
    return pd.DataFrame(rows)
