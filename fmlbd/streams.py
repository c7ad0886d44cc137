"""Named random streams: every random draw of an experiment comes from one of these.

Each stream is a numpy generator seeded by ``[seed, stream id, *extra]``, so streams never
overlap and a number depends only on the config's seed and the stream's name. The federation's
own generators (server delays, one per client) are spawned from ``seed`` by
:class:`~fmlbd.federated.Federation`; the adversary's draw ``n > 0`` replaces its client stream
with the ``adversary_draw`` stream.
"""
from __future__ import annotations

import numpy as np
import torch

#: stream name -> id (never renumber: ids are part of every result)
STREAM_IDS = {
    "scenario": 1,            # shuffle of meta-train characters, client shares
    "main_episodes": 2,       # fixed main-task evaluation episodes, per shot count
    "backdoor_episodes": 3,   # fixed backdoor evaluation episodes, per shot count
    "adversary_draw": 7,      # the adversary's poisoned training, per draw (n > 0)
}


def stream(name: str, seed: int, *extra: int) -> np.random.Generator:
    """The generator of stream ``name`` for ``seed`` (``extra``: e.g. the shot count or the draw)."""
    if name not in STREAM_IDS:
        raise ValueError(f"unknown random stream {name!r}; choose one of {sorted(STREAM_IDS)}")
    return np.random.default_rng([seed, STREAM_IDS[name], *extra])


def seed_model_init(seed: int) -> None:
    """Seed torch's global generator before a network's weights are initialised."""
    torch.manual_seed(seed)
