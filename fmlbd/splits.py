"""Who holds which classes: meta-train / meta-test split, client shares, target and backdoor classes.

Meta-test classes are whole alphabets held out from meta-training. Meta-train
characters are shuffled (seeded); the first is the target class, the next
``attack.backdoor_classes`` are the backdoor classes, and the rest are dealt
into disjoint shares, one per client (client 0 is the adversary). Rotated
copies of a character stay with the same owner. Target and backdoor classes
are used unrotated only. Benign clients hold the target class in every case,
and the backdoor classes in cases (a) and (c) only (PROTOCOL.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checks import CASES
from .data import ClassPool
from .errors import DatasetError
from .episodes import add_rotations, partition, rotation_family
from .streams import stream



@dataclass(frozen=True)
class Scenario:
    """Class ownership for one experiment. Class indices refer to ``pool``.

    pool: classes with rotations (character ``c`` -> ``c*rotations + r``).
    test_classes: unrotated meta-test classes. client_classes[i]: classes client i
    trains on benignly (client 0 = adversary). target_class / backdoor_classes:
    unrotated meta-train characters chosen for the attack.
    """

    pool: ClassPool
    rotations: int
    test_classes: tuple[int, ...]
    client_classes: tuple[tuple[int, ...], ...]
    target_class: int
    backdoor_classes: tuple[int, ...]

    def fingerprint(self) -> dict:
        """What the class assignment is, for cache keys."""
        return {"clients": [list(c) for c in self.client_classes], "test": list(self.test_classes),
                "target": self.target_class, "backdoor": list(self.backdoor_classes)}


def make_scenario(base: ClassPool, test_groups, clients: int, rotations: int, case: str, backdoor_classes: int,
                  seed: int) -> Scenario:
    """Build the class assignment from an unrotated pool (see module docstring)."""
    if case not in CASES:
        raise ValueError(f"unknown case {case!r}; choose one of {CASES}")
    missing = sorted(set(test_groups) - set(base.groups))
    if missing:
        raise DatasetError(f"test groups {missing} are not in the data; available: {sorted(set(base.groups))}")
    test_base = base.classes_in(test_groups)
    train_base = [c for c in range(base.num_classes) if c not in set(test_base)]
    if not test_base:
        raise DatasetError("no meta-test classes: name at least one test alphabet")
    needed = 1 + backdoor_classes + clients
    if len(train_base) < needed:
        raise DatasetError(f"{len(train_base)} meta-train classes cannot supply a target, {backdoor_classes} "
                           f"backdoor classes and {clients} client shares")
    rng = stream("scenario", seed)
    order = [int(c) for c in rng.permutation(np.asarray(train_base))]
    target, backdoor, rest = order[0], order[1:1 + backdoor_classes], order[1 + backdoor_classes:]
    shares = [[r for c in share for r in rotation_family(c, rotations)] for share in partition(rest, clients, rng)]
    benign = list(range(1, clients)) or [0]
    shares[benign[0]].append(target * rotations)
    if case in ("a", "c"):
        for i, c in enumerate(backdoor):
            shares[benign[i % len(benign)]].append(c * rotations)
    return Scenario(
        pool=add_rotations(base, rotations),
        rotations=rotations,
        test_classes=tuple(c * rotations for c in test_base),
        client_classes=tuple(tuple(sorted(s)) for s in shares),
        target_class=target * rotations,
        backdoor_classes=tuple(c * rotations for c in backdoor),
    )
