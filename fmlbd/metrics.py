"""Evaluation metrics. Every accuracy is a fraction in [0, 1].

main task accuracy
    Mean query accuracy over benign N-way K-shot episodes of meta-test classes, after
    fine-tuning a copy of the model on each episode's support set
    (``eval.finetune_steps`` SGD steps at ``eval.finetune_lr``). Queries are classified
    one by one (batch norm uses support statistics).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .data import ClassPool
from .episodes import Episode, sample_episode
from .functional import Params, predict
from .labels import BACKDOOR_METRICS
from .meta import finetune
from .parallel import pmap
from .streams import stream


#: a backdoor counts as planted when backdoor accuracy is more than this above its no-attack level
#: (the same model family before any attack); within it, the attack is "stopped"
BACKDOOR_MARGIN = 0.10
#: a defense "keeps the main task" when its main-task accuracy is at most this far below the undefended
#: model's (the local defense's and every server rule's one margin). A main-task estimate of 200
#: episodes has a 95% interval of about +-0.015, so a difference of two has about +-0.02: a smaller
#: margin would call a defense costly on noise
MAIN_TASK_MARGIN = 0.05

#: Student's t 0.975 quantile for 1..10 degrees of freedom (beyond 10: within 0.27 of 1.96; see mean_ci95_t)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    return (pred == labels).float().mean().item()


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of its normal 95% confidence interval."""
    v = np.asarray(values, dtype=float)
    half = 1.96 * v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else float("nan")
    return float(v.mean()), float(half)


def mean_ci95_t(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of its Student-t 95% confidence interval: for a handful of draws, where
    the normal interval of :func:`mean_ci95` is too narrow (beyond 11 values, the normal one)."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()), float("nan")
    q = _T975[len(v) - 2] if len(v) - 1 <= len(_T975) else 1.96
    return float(v.mean()), float(q * v.std(ddof=1) / math.sqrt(len(v)))


def evaluation_episodes(pool: ClassPool, classes: Sequence[int], ways: int, shots: int, queries: int,
                        episodes: int, seed: int) -> list[Episode]:
    """The fixed, seeded list of evaluation episodes (the same for every model compared)."""
    rng = stream("main_episodes", seed, shots)
    return [sample_episode(pool, classes, ways, shots, queries, rng) for _ in range(episodes)]


def episode_accuracies(adapt: Callable[[Episode], Callable], episodes: Sequence[Episode]) -> np.ndarray:
    """Query accuracy of each episode's classifier ``adapt(episode)``: ``[episodes]`` (episodes side
    by side, :func:`~fmlbd.parallel.pmap`)."""
    return np.asarray(pmap(lambda ep: accuracy(adapt(ep)(ep.query_x), ep.query_y), episodes))


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


def backdoor_episodes(pool: ClassPool, test_classes: Sequence[int], target: int, backdoor: Sequence[int], case: str,
                      ways: int, shots: int, queries: int, episodes: int, seed: int,
                      target_label: int | None = None) -> list[Episode]:
    """Seeded evaluation episodes that always contain the target (with label ``target_label``,
    random if None) and, in case (c), the backdoor classes."""
    include = [target] + (list(backdoor)[:ways - 1] if case == "c" else [])
    pinned = None if target_label is None else {target: target_label}
    rng = stream("backdoor_episodes", seed, shots)
    return [sample_episode(pool, test_classes, ways, shots, queries, rng, include=include, pinned=pinned)
            for _ in range(episodes)]


def scored_rows(source: np.ndarray, episode: Episode, case: str) -> np.ndarray:
    """Bool mask of the attack-set rows (``source``: ``[n, 2]`` class, index) scored in ``episode``."""
    if case != "c":
        return np.ones(len(source), dtype=bool)
    in_support = {(c, int(i)) for c, idx in zip(episode.classes, episode.support_index) for i in idx}
    return np.array([int(c) in episode.classes and (int(c), int(i)) not in in_support for c, i in source])


def backdoor_batch(episode: Episode, attack, case: str) -> tuple[torch.Tensor, list[int]]:
    """The images scored in ``episode``: its queries, then the scored rows of the attack
    training and validation sets, as one batch ``[B, ch, H, W]``, and the three part sizes."""
    parts = [episode.query_x] + [x[torch.from_numpy(scored_rows(source, episode, case))]
                                 for x, source in ((attack.train_x, attack.train_source),
                                                   (attack.val_x, attack.val_source))]
    return torch.cat(parts), [len(p) for p in parts]


def score_backdoor_predictions(pred: torch.Tensor, sizes: Sequence[int], episode: Episode,
                               target: int) -> dict[str, float]:
    """The three episode-level metrics from predicted labels ``[B]`` of :func:`backdoor_batch`."""
    label = episode.classes.index(target)
    query, train, val = pred.split(list(sizes))
    return {"meta_test_acc": accuracy(query, episode.query_y),
            "backdoor_train_acc": (train == label).float().mean().item(),
            "backdoor_val_acc": (val == label).float().mean().item()}


def score_backdoor_episode(classify: Callable[[torch.Tensor], torch.Tensor], episode: Episode, attack, target: int,
                           case: str) -> dict[str, float]:
    """The three episode-level metrics of a classifier adapted to ``episode``.

    classify: images ``[B, ch, H, W]`` -> predicted labels ``[B]`` (each image on its own, so
    the queries and both attack sets go through it in one batch).
    """
    images, sizes = backdoor_batch(episode, attack, case)
    return score_backdoor_predictions(classify(images), sizes, episode, target)


def finetuned_classifier(model: nn.Module, params: Params, episode: Episode, steps: int, lr: float):
    """The standard meta-test procedure: fine-tune on the support set, predict with the result."""
    tuned, buffers = finetune(model, params, episode.support_x, episode.support_y, steps, lr)
    return lambda x: predict(model, tuned, buffers, x)


def backdoor_scores(adapt: Callable[[Episode], Callable], episodes: Sequence[Episode], attack, target: int,
                    case: str) -> dict[str, np.ndarray]:
    """Per-episode backdoor metrics: ``{metric: [episodes]}``. ``adapt(episode)`` returns the
    episode's classifier (e.g. :func:`finetuned_classifier`, or a matching-network defense); episodes
    side by side (:func:`~fmlbd.parallel.pmap`)."""
    per_episode = pmap(lambda ep: score_backdoor_episode(adapt(ep), ep, attack, target, case), episodes)
    return {m: np.array([s[m] for s in per_episode]) for m in BACKDOOR_METRICS}
