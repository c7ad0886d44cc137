"""Class splits and seeded N-way K-shot episodes drawn from a :class:`~fmlbd.data.ClassPool`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from .data import ClassPool
from .errors import DatasetError


@dataclass(frozen=True)
class Episode:
    """One N-way episode. Labels are ``0..N-1`` in a random order of ``classes``.

    support_x: float ``[N*K, ch, H, W]`` in [0, 1]; support_y: ``[N*K]``.
    query_x: float ``[N*Q, ch, H, W]``; query_y: ``[N*Q]``.
    classes: pool class index of each label. support_index / query_index:
    ``[N, K]`` / ``[N, Q]`` image indices within each class (disjoint per class).
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    classes: tuple[int, ...]
    support_index: np.ndarray
    query_index: np.ndarray

    @property
    def ways(self) -> int:
        return len(self.classes)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> floats in [0, 1], of torch's default dtype (float32 unless changed)."""
    return images.to(torch.get_default_dtype()).div_(255.0)


def check_episode_request(pool: ClassPool, classes: Sequence[int], ways: int, shots: int, queries: int) -> None:
    """Raise :class:`DatasetError` naming the fix if the episode cannot be drawn."""
    if ways < 1 or shots < 1 or queries < 0:
        raise DatasetError(f"episode needs ways >= 1, shots >= 1, queries >= 0 (got {ways}, {shots}, {queries})")
    if len(set(classes)) != len(classes):
        raise DatasetError(f"the classes to draw from repeat a class id ({len(classes)} ids, {len(set(classes))} "
                           f"distinct): an N-way episode needs N distinct classes")
    if ways > len(classes):
        raise DatasetError(
            f"cannot draw a {ways}-way episode from {len(classes)} classes: lower `ways` "
            f"or give this split more classes (e.g. other test alphabets or the full dataset)."
        )
    if shots + queries > pool.images_per_class:
        raise DatasetError(
            f"shots + queries = {shots + queries} exceeds the {pool.images_per_class} images per class: "
            f"lower `shots` or `queries`."
        )


def sample_episode(
    pool: ClassPool,
    classes: Sequence[int],
    ways: int,
    shots: int,
    queries: int,
    rng: np.random.Generator,
    include: Sequence[int] = (),
    pinned: Mapping[int, int] | None = None,
) -> Episode:
    """Draw an episode: ``ways`` distinct classes from ``classes`` (always containing
    every class of ``include``), ``shots`` support and ``queries`` query images each.
    Labels follow a random order of the classes, except ``pinned`` (class -> label) classes
    of ``include``, which always get that label."""
    check_episode_request(pool, classes, ways, shots, queries)
    include = list(dict.fromkeys(include))
    if len(include) > ways:
        raise DatasetError(f"{len(include)} required classes do not fit in a {ways}-way episode")
    others = [c for c in classes if c not in set(include)]
    if len(include) + len(others) < ways:
        raise DatasetError(f"cannot draw a {ways}-way episode from {len(include) + len(others)} classes")
    chosen = include + [int(c) for c in rng.choice(others, size=ways - len(include), replace=False)]
    chosen = [chosen[i] for i in rng.permutation(ways)]
    for cls, label in (pinned or {}).items():
        if cls not in include or not 0 <= label < ways:
            raise DatasetError(f"cannot pin class {cls} to label {label} in a {ways}-way episode including {include}")
        at = chosen.index(cls)
        chosen[at], chosen[label] = chosen[label], chosen[at]
    picks = np.stack([rng.choice(pool.images_per_class, size=shots + queries, replace=False) for _ in chosen])
    support_index, query_index = picks[:, :shots], picks[:, shots:]
    cls = torch.as_tensor(chosen)[:, None]
    labels = torch.arange(ways, device=pool.images.device)
    support = pool.images[cls, torch.from_numpy(support_index)]
    query = pool.images[cls, torch.from_numpy(query_index)]
    return Episode(
        support_x=to_float(support.flatten(0, 1)),
        support_y=labels.repeat_interleave(shots),
        query_x=to_float(query.flatten(0, 1)),
        query_y=labels.repeat_interleave(queries),
        classes=tuple(chosen),
        support_index=support_index,
        query_index=query_index,
    )


def add_rotations(pool: ClassPool, turns: int) -> ClassPool:
    """Pool with ``turns`` rotated copies (multiples of 90 degrees) of every class as new classes.

    Class ``c`` of the input becomes classes ``c*turns + r`` (rotation ``r*90`` degrees),
    so :func:`rotation_family` finds every copy of a character.
    """
    if turns == 1:
        return pool
    if turns not in (2, 4):
        raise ValueError("rotations must be 1, 2 or 4")
    step = 4 // turns
    rotated = torch.stack([torch.rot90(pool.images, k=r * step, dims=(-2, -1)) for r in range(turns)], dim=1)
    return ClassPool(
        images=rotated.flatten(0, 1).contiguous(),
        names=tuple(f"{n}@{r * step * 90}" for n in pool.names for r in range(turns)),
        groups=tuple(g for g in pool.groups for _ in range(turns)),
    )


def rotation_family(base_class: int, turns: int) -> list[int]:
    """Indices, in a pool made by :func:`add_rotations`, of every rotation of ``base_class``."""
    return list(range(base_class * turns, (base_class + 1) * turns))


def partition(classes: Sequence[int], parts: int, rng: np.random.Generator) -> list[list[int]]:
    """Shuffle ``classes`` and deal them into ``parts`` disjoint, near-equal shares."""
    if parts > len(classes):
        raise DatasetError(f"cannot give {parts} clients a class each from {len(classes)} classes")
    order = [int(c) for c in rng.permutation(np.asarray(classes))]
    return [sorted(order[i::parts]) for i in range(parts)]
