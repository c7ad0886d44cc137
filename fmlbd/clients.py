"""The federation's participants: a benign client that meta-trains on its own classes, and the
adversary (client 0), benign until the attack, then poisoned, boosted and optionally shaped to pass
a server's rule (:func:`fmlbd.evasion.shape_update`). Each implements
:class:`~fmlbd.federated.Client`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .evasion import shape_update
from .functional import Params
from .meta import local_meta_train


def boosted_delta(local: Params, params: Params, boost: float) -> Params:
    """The adversary's upload: ``boost`` x (its locally trained weights - the global weights it started
    from), tensor by tensor. Boosted by the buffer size, it outweighs the other updates of its round."""
    return {k: boost * (local[k] - params[k]) for k in params}


@dataclass
class BenignClient:
    """Runs local meta-training on episodes from ``sample(rng)`` and uploads the delta."""

    sample: Callable[[np.random.Generator], object]
    meta_cfg: object

    def local_update(self, model, params, version, rng):
        local = local_meta_train(model, params, self.sample, self.meta_cfg, self.meta_cfg.local_iterations, rng)
        return {k: local[k] - params[k] for k in params}, False


@dataclass
class MaliciousClient:
    """Client 0: benign until the global version reaches ``attack_version``; then its next
    ``poison_rounds`` local trainings are poisoned (episodes from ``poison_sample``, ``attack_iterations``
    meta-steps each), each delta multiplied by ``boost`` and, when ``norm_cap`` or ``disguise_z`` is set,
    shaped against ``benign_samples`` benign updates of its own from the same global model
    (:func:`fmlbd.evasion.shape_update`); afterwards benign again or silent (``after``)."""

    benign: BenignClient
    poison_sample: Callable[[np.random.Generator], object]
    meta_cfg: object
    attack_iterations: int
    boost: float
    attack_version: int
    after: str = "benign"
    poison_rounds: int = 1
    norm_cap: float | None = None
    disguise_z: float | None = None
    benign_samples: int = 3
    upload: Callable[[Params, Params, float], Params] = boosted_delta  #: (local, global, boost) -> the update sent
    sent: int = 0  # poisoned updates sent so far

    def __post_init__(self):
        if self.after not in ("benign", "silent"):
            raise ValueError(f"after_attack must be 'benign' or 'silent', not {self.after!r}")

    @property
    def attacked(self) -> bool:
        return self.sent >= self.poison_rounds

    def local_update(self, model, params, version, rng):
        if self.attacked and self.after == "silent":
            return None
        if self.attacked or version < self.attack_version:
            return self.benign.local_update(model, params, version, rng)
        local = local_meta_train(model, params, self.poison_sample, self.meta_cfg, self.attack_iterations, rng)
        delta = self.upload(local, params, self.boost)
        if self.norm_cap is not None or self.disguise_z is not None:
            benign = [self.benign.local_update(model, params, version, rng)[0] for _ in range(self.benign_samples)]
            delta = shape_update(delta, benign, self.norm_cap, self.disguise_z)
        self.sent += 1
        return delta, True

    def state_dict(self):
        return {"sent": self.sent}

    def load_state_dict(self, state):
        self.sent = state.get("sent", 0)  # a benign client's state has no such key
