"""Threat model: the backdoor key, the attack training / validation sets, poisoned episodes.

The adversary wants images of the *backdoor classes* that carry the *key* (a
fixed pixel pattern) to be classified as the *target class*. Its attack training
set is the keyed images it trains on; the attack validation set is other keyed
images of the same classes that it never sees (generalisation of the backdoor).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .checks import check_values, key_extent, key_problem
from .data import ClassPool
from .episodes import Episode, sample_episode, to_float


@dataclass(frozen=True)
class BackdoorKey:
    """A pixel pattern stamped at a fixed place.

    pattern "dots": four ``size`` x ``size`` squares on the corners of a square of side
    ``size + gap`` (the "::" key of the poster); "patch": one ``size`` x ``size`` square.
    row, col: top-left pixel (negative values count from the bottom / right edge).
    value: intensity written in every channel, in [0, 1] (1 = ink on inverted Omniglot).
    """

    pattern: str = "dots"
    row: int = -8
    col: int = -8
    size: int = 2
    gap: int = 2
    value: float = 1.0

    def __post_init__(self):
        problem = check_values("key", {"pattern": self.pattern, "size": self.size, "gap": self.gap,
                                       "value": self.value, "row": self.row, "col": self.col})
        if problem:
            raise ValueError(problem)

    def mask(self, height: int, width: int) -> torch.Tensor:
        """Bool ``[height, width]``, True where the key writes."""
        extent = key_extent(self.pattern, self.size, self.gap)
        problem = key_problem(self.row, self.col, extent, height, width)
        if problem:
            raise ValueError(problem)
        step = self.size + self.gap
        offsets = [(0, 0), (0, step), (step, 0), (step, step)] if self.pattern == "dots" else [(0, 0)]
        r0 = self.row + height if self.row < 0 else self.row
        c0 = self.col + width if self.col < 0 else self.col
        m = torch.zeros(height, width, dtype=torch.bool)
        for dr, dc in offsets:
            m[r0 + dr:r0 + dr + self.size, c0 + dc:c0 + dc + self.size] = True
        return m

    def stamp(self, images: torch.Tensor) -> torch.Tensor:
        """Keyed copy of float images ``[..., ch, H, W]`` in [0, 1]."""
        m = self.mask(images.shape[-2], images.shape[-1]).to(images.device)
        return torch.where(m, torch.full_like(images, self.value), images)


@dataclass(frozen=True)
class AttackSets:
    """Keyed images of the backdoor classes.

    train_x / val_x: float ``[n, ch, H, W]`` (keyed). train_source / val_source:
    ``[n, 2]`` (pool class, image index) of the clean image each was made from.
    Per backdoor class the first ``train_per_class`` images (drawer order) are the
    attack training set, the rest the attack validation set.
    """

    train_x: torch.Tensor
    train_source: np.ndarray
    val_x: torch.Tensor
    val_source: np.ndarray


def make_attack_sets(pool: ClassPool, backdoor_classes, key: BackdoorKey | None, train_per_class: int) -> AttackSets:
    """The attack sets; ``key=None`` gives the same images without the key (a control)."""
    if not 0 < train_per_class < pool.images_per_class:
        raise ValueError(f"attack_train_images must be in 1..{pool.images_per_class - 1}")
    if not len(backdoor_classes) or not all(0 <= c < pool.num_classes for c in backdoor_classes):
        raise ValueError(f"backdoor_classes must be a non-empty list of class indices of the pool "
                         f"(0..{pool.num_classes - 1}), not {list(backdoor_classes)}")
    split = {"train": range(train_per_class), "val": range(train_per_class, pool.images_per_class)}
    out = {}
    for name, indices in split.items():
        source = np.array([(c, i) for c in backdoor_classes for i in indices]).reshape(-1, 2)
        images = pool.images[torch.as_tensor(source[:, 0]), torch.as_tensor(source[:, 1])]
        out[name] = (to_float(images) if key is None else key.stamp(to_float(images)), source)
    return AttackSets(out["train"][0], out["train"][1], out["val"][0], out["val"][1])


def poisoned_episode(pool: ClassPool, classes, target: int, ways: int, shots: int, queries: int, poison: int,
                     attack: AttackSets, rng: np.random.Generator, target_label: int | None = None,
                     poison_support: bool = True) -> Episode:
    """An adversary's training episode: the target class is always one of the ``ways``
    classes (with label ``target_label``, or a random one if None), and ``poison`` keyed
    attack-training images labelled as the target are added to its query images and, if
    ``poison_support``, ``poison`` more to its support images (without them, keyed queries
    must be matched to the clean target images of the support: an attack on similarity-based
    classifiers)."""
    ep = sample_episode(pool, classes, ways, shots, queries, rng, include=[target],
                        pinned=None if target_label is None else {target: target_label})
    label = ep.classes.index(target)
    picks = torch.as_tensor(rng.choice(len(attack.train_x), size=2 * poison, replace=len(attack.train_x) < 2 * poison))
    keyed_s = attack.train_x[picks[:poison]] if poison_support else attack.train_x[:0]
    keyed_q = attack.train_x[picks[poison:]]

    def label_of(x: torch.Tensor) -> torch.Tensor:
        return torch.full((len(x),), label, dtype=torch.long, device=x.device)

    return Episode(
        support_x=torch.cat([ep.support_x, keyed_s]), support_y=torch.cat([ep.support_y, label_of(keyed_s)]),
        query_x=torch.cat([ep.query_x, keyed_q]), query_y=torch.cat([ep.query_y, label_of(keyed_q)]),
        classes=ep.classes, support_index=ep.support_index, query_index=ep.query_index,
    )
