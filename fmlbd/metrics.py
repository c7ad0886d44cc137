"""Evaluation metrics. Every accuracy is a fraction in [0, 1].

main task accuracy
    Mean query accuracy over benign N-way K-shot episodes of meta-test classes, after
    fine-tuning a copy of the model on each episode's support set
    (``eval.finetune_steps`` SGD steps at ``eval.finetune_lr``). Queries are classified
    one by one (batch norm uses support statistics).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .data import ClassPool
from .episodes import Episode, sample_episode
from .meta import Params, finetune, predict


def accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    return (pred == labels).float().mean().item()


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of its normal 95% confidence interval."""
    v = np.asarray(values, dtype=float)
    half = 1.96 * v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else float("nan")
    return float(v.mean()), float(half)


def evaluation_episodes(pool: ClassPool, classes: Sequence[int], ways: int, shots: int, queries: int,
                        episodes: int, seed: int) -> list[Episode]:
    """The fixed, seeded list of evaluation episodes (the same for every model compared)."""
    rng = np.random.default_rng([seed, 2, shots])
    return [sample_episode(pool, classes, ways, shots, queries, rng) for _ in range(episodes)]


def episode_accuracies(model: nn.Module, params: Params, episodes: Sequence[Episode], steps: int,
                       lr: float) -> np.ndarray:
    """Query accuracy of each episode after fine-tuning on its support set: ``[episodes]``."""
    out = []
    for ep in episodes:
        tuned, buffers = finetune(model, params, ep.support_x, ep.support_y, steps, lr)
        out.append(accuracy(predict(model, tuned, buffers, ep.query_x), ep.query_y))
    return np.asarray(out)


# --- backdoor metrics -------------------------------------------------------------------------
#
# backdoor accuracy (attack training / attack validation)
#     Fraction of keyed backdoor images (the attack training set, or the attack
#     validation set) classified as the target class, in N-way meta-test episodes whose
#     classes include the target class, after fine-tuning on that episode's benign
#     support set. The other N-1 classes are meta-test classes in cases (a) and (b); in
#     case (c) the backdoor classes are among them (their clean images in the support
#     set) and only keyed images of backdoor classes present in the episode, made from
#     images not in its support set, are scored. Chance level is about 1/N.
# meta-testing accuracy
#     Accuracy on the benign query images of those same episodes.

BACKDOOR_METRICS = ("meta_test_acc", "backdoor_train_acc", "backdoor_val_acc")


def backdoor_episodes(pool: ClassPool, test_classes: Sequence[int], target: int, backdoor: Sequence[int], case: str,
                      ways: int, shots: int, queries: int, episodes: int, seed: int) -> list[Episode]:
    """Seeded evaluation episodes that always contain the target (and, in case (c), the backdoor classes)."""
    include = [target] + (list(backdoor)[:ways - 1] if case == "c" else [])
    rng = np.random.default_rng([seed, 3, shots])
    return [sample_episode(pool, test_classes, ways, shots, queries, rng, include=include) for _ in range(episodes)]


def scored_rows(source: np.ndarray, episode: Episode, case: str) -> np.ndarray:
    """Bool mask of the attack-set rows (``source``: ``[n, 2]`` class, index) scored in ``episode``."""
    if case != "c":
        return np.ones(len(source), dtype=bool)
    in_support = {(c, int(i)) for c, idx in zip(episode.classes, episode.support_index) for i in idx}
    return np.array([int(c) in episode.classes and (int(c), int(i)) not in in_support for c, i in source])


def score_backdoor_episode(model: nn.Module, params: Params, buffers: Params, episode: Episode, attack, target: int,
                           case: str) -> dict[str, float]:
    """The three episode-level metrics of an already fine-tuned model (``buffers``: support statistics)."""
    label = episode.classes.index(target)
    out = {"meta_test_acc": accuracy(predict(model, params, buffers, episode.query_x), episode.query_y)}
    for name, x, source in (("backdoor_train_acc", attack.train_x, attack.train_source),
                            ("backdoor_val_acc", attack.val_x, attack.val_source)):
        rows = torch.from_numpy(scored_rows(source, episode, case))
        out[name] = (predict(model, params, buffers, x[rows]) == label).float().mean().item()
    return out


def backdoor_scores(model: nn.Module, params: Params, episodes: Sequence[Episode], attack, target: int, case: str,
                    steps: int, lr: float) -> dict[str, np.ndarray]:
    """Per-episode backdoor metrics after fine-tuning on each support set: ``{metric: [episodes]}``."""
    per_episode = []
    for ep in episodes:
        tuned, buffers = finetune(model, params, ep.support_x, ep.support_y, steps, lr)
        per_episode.append(score_backdoor_episode(model, tuned, buffers, ep, attack, target, case))
    return {m: np.array([s[m] for s in per_episode]) for m in BACKDOOR_METRICS}
