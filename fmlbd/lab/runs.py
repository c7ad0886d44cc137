"""Each code task's mechanism run in its notebook's experiment, the learner's function in place of
fmlbd's, beside fmlbd's own result.

Every run reads fmlbd's cached attack (and the rounds after it, computed by fmlbd if missing) and
computes the rest in memory: nothing the learner's code computes is read from the cache or written
to it. :func:`outcome` runs one only for a function that passes its task's
public checks; otherwise it returns their report (an unwritten task runs nothing and raises nothing).
Tidy rows: ``implementation`` ("yours" or "fmlbd's"), then the task's columns.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..aggregation import NormClip
from ..builders import attack_clients, attack_sets, backdoor_key
from ..config import ExperimentConfig
from ..defense import MatchingNetworkDefense
from ..evaluation import attack_metrics
from ..functional import call, flatten, support_buffers
from ..meta import finetune
from ..metrics import finetuned_classifier, scored_rows
from ..pipeline import Attacked, attack_federation, dampening_snapshots
from ..walkthrough import attack_round_updates, keyed_episode
from . import tasks

BOTH = ("yours", "fmlbd's")


def outcome(name: str, fn: Callable, run: Callable[[], pd.DataFrame]):
    """``run()`` if the learner's ``fn`` passes the public checks of task ``name``, else their report."""
    report = tasks.check(name, fn)
    return run() if report.ok else report


def intervals(scores: dict[str, np.ndarray], confidence_interval: Callable) -> pd.DataFrame:
    """00: each metric's mean and 95% interval half-width over its per-episode ``scores`` (as
    :func:`~fmlbd.evaluation.attack_scores` returns them, passed on as float64 tensors), by your
    function and by fmlbd's. Rows: implementation, metric (both ordered, so a pivot keeps the order),
    mean, ci95."""
    rows = []
    for who, fn in zip(BOTH, (confidence_interval, tasks.interval_reference)):
        for metric, values in scores.items():
            mean, half = fn(torch.as_tensor(values, dtype=torch.float64))
            rows.append({"implementation": who, "metric": metric, "mean": float(mean), "ci95": float(half)})
    table = pd.DataFrame(rows)
    return table.assign(implementation=pd.Categorical(table["implementation"], BOTH),
                        metric=pd.Categorical(table["metric"], list(scores)))


def key_on_images(cfg: ExperimentConfig, attacked: Attacked, case: str, stamp_key: Callable) -> pd.DataFrame:
    """01: the poisoned model, fine-tuned on one evaluation episode's support set as a user would, asked
    about that episode's attack validation images with no key, with your key and with fmlbd's. Rows:
    images, to_target (share classified as the target class)."""
    scenario = attacked.trained.scenario
    episode, keyed, target = keyed_episode(cfg, attacked, case)
    clean = attack_sets(cfg, scenario, keyed=False)
    clean = clean.val_x[torch.from_numpy(scored_rows(clean.val_source, episode, case))]
    classify = finetuned_classifier(attacked.trained.model, attacked.after, episode, cfg.eval.finetune_steps,
                                    cfg.eval.finetune_lr)
    shown = {"no key": clean, "your key": stamp_key(clean.clone(), backdoor_key(cfg)), "fmlbd's key": keyed}
    return pd.DataFrame([{"images": k, "to_target": float((classify(x) == target).float().mean())}
                         for k, x in shown.items()])


def attack_round_with(cfg: ExperimentConfig, attacked: Attacked, case: str, boosted_update: Callable) -> pd.DataFrame:
    """02: the attack replayed with your upload in the adversary's place; the backdoor metrics
    (``measure.curve_episodes`` episodes) of the global model right after the round that aggregated
    it, and of fmlbd's (the cached attack). Rows: implementation, metric, value."""
    trained = attacked.trained
    clients = attack_clients(cfg, trained.scenario, cfg.federation.rounds)
    clients[0] = replace(clients[0], upload=boosted_update)
    with attack_federation(cfg, trained, clients) as federation:
        while not federation.step().poisoned:
            pass
        yours = federation.params
    rows = []
    for who, params in zip(BOTH, (yours, attacked.after)):
        m = attack_metrics(cfg, trained.model, params, trained.scenario, case, cfg.measure.curve_episodes,
                           main_task=False)  # the main task's scores would be saved under the cache
        rows += [{"implementation": who, "metric": k, "value": v} for k, v in m.items()]
    return pd.DataFrame(rows)


def distance_over_rounds(cfg: ExperimentConfig, attacked: Attacked, case: str,
                         model_distance: Callable) -> pd.DataFrame:
    """03: the distance of the global model from the poisoned one after each measured benign round,
    by your function and by fmlbd's. Rows: implementation, round, distance."""
    snapshots = dampening_snapshots(cfg, case, False, attacked)
    return pd.DataFrame([{"implementation": who, "round": r, "distance": float(fn(p, attacked.after))}
                         for who, fn in zip(BOTH, (model_distance, tasks.distance_reference))
                         for r, p in snapshots.items()])


def finetune_with(cfg: ExperimentConfig, attacked: Attacked, case: str, finetune_step: Callable,
                  steps: int = 20) -> pd.DataFrame:
    """04: the poisoned model fine-tuned on one evaluation episode's support set for ``steps`` steps of your
    step and of fmlbd's (``eval.finetune_lr``); after each, the mean probability of the target class for
    the episode's keyed images. Rows: implementation, step, p_target."""
    model = attacked.trained.model
    episode, keyed, target = keyed_episode(cfg, attacked, case)

    def p_target(params) -> float:
        buffers = support_buffers(model, params, episode.support_x)
        with torch.no_grad():
            return float(call(model, params, buffers, keyed, train=False).softmax(1)[:, target].mean())

    def loss(params):
        return F.cross_entropy(call(model, params, support_buffers(model, params, episode.support_x),
                                    episode.support_x, train=True), episode.support_y)

    rows, params = [{"implementation": "yours", "step": 0, "p_target": p_target(attacked.after)}], attacked.after
    for step in range(1, steps + 1):
        params = finetune_step(params, loss, cfg.eval.finetune_lr)
        rows.append({"implementation": "yours", "step": step, "p_target": p_target(params)})
    theirs = [0.0] * (steps + 1)
    theirs[0] = rows[0]["p_target"]
    finetune(model, attacked.after, episode.support_x, episode.support_y, steps, cfg.eval.finetune_lr,
             on_step=lambda step, p: theirs.__setitem__(step, p_target(p)))
    return pd.DataFrame(rows + [{"implementation": "fmlbd's", "step": i, "p_target": p} for i, p in enumerate(theirs)])


def attention_on_keyed(cfg: ExperimentConfig, attacked: Attacked, case: str,
                       cosine_attention: Callable) -> pd.DataFrame:
    """05: the local matching network of one evaluation episode (``defense.temperature``) classifying
    its keyed images with your attention and with fmlbd's. Rows: implementation, to_target (share put in
    the target class), p_target (mean probability of the target class)."""
    episode, keyed, target = keyed_episode(cfg, attacked, case)
    defense = MatchingNetworkDefense(attacked.trained.model, attacked.after, episode.support_x, episode.support_y)
    query, support = defense.features(keyed), defense.features(episode.support_x)
    rows = []
    for who, fn in zip(BOTH, (cosine_attention, tasks.attention_reference)):
        probs = fn(query, support, episode.support_y, defense.ways, cfg.defense.temperature)
        rows.append({"implementation": who, "to_target": float((probs.argmax(1) == target).float().mean()),
                     "p_target": float(probs[:, target].mean())})
    return pd.DataFrame(rows)


def _attack_round(cfg: ExperimentConfig, attacked: Attacked) -> tuple[list, float]:
    """The walk-through's attack round replayed (its updates) and the median norm of its benign updates."""
    updates = attack_round_updates(cfg, attacked.trained)
    return updates, float(flatten([u.delta for u in updates if not u.poisoned]).norm(dim=1).median())


def clipped_round(cfg: ExperimentConfig, attacked: Attacked, clip_updates: Callable) -> pd.DataFrame:
    """06: the attack round's updates clipped to the median norm of the round's benign updates by your
    function and by fmlbd's, and the mean step's cosine with the poisoned update. Rows: implementation,
    client, poisoned, norm_before, norm_after, step_cos_poisoned."""
    updates, bound = _attack_round(cfg, attacked)
    flat = flatten([u.delta for u in updates])
    norms = flat.norm(dim=1)
    bad = flat[[u.poisoned for u in updates].index(True)]
    rows = []
    for who, fn in zip(BOTH, (clip_updates, tasks.clip_reference)):
        clipped = fn(flat.clone(), bound)
        cos = float(F.cosine_similarity(clipped.mean(0), bad, dim=0))
        rows += [{"implementation": who, "client": u.client, "poisoned": u.poisoned, "norm_before": float(norms[i]),
                  "norm_after": float(clipped[i].norm()), "step_cos_poisoned": cos} for i, u in enumerate(updates)]
    return pd.DataFrame(rows)


def capped_update(cfg: ExperimentConfig, attacked: Attacked, cap_update: Callable, cap: float = 0.95) -> pd.DataFrame:
    """07: the attack round's poisoned update capped to ``cap`` x the median norm of the round's benign
    updates by your function and by fmlbd's, then judged by norm clipping at that median: the scale the
    clip applies (1: it passes untouched). Rows: implementation, norm, clip_scale."""
    updates, bound = _attack_round(cfg, attacked)
    benign = [u.delta for u in updates if not u.poisoned]
    bad = next(u.delta for u in updates if u.poisoned)
    rows = []
    for who, fn in zip(BOTH, (cap_update, tasks.cap_reference)):
        capped = flatten([fn({k: v.clone() for k, v in bad.items()}, benign, cap)])
        scale = float(NormClip(bound=bound).explain(capped)[0])
        rows.append({"implementation": who, "norm": float(capped.norm()), "clip_scale": scale})
    return pd.DataFrame(rows)
