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
