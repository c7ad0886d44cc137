"""Every experiment of the series, by name. The CLI (``attack``, ``defend``), the batch and the
notebooks run experiments from here; adding one is a spec in ``fmlbd/experiments/`` and a line below."""
from __future__ import annotations

import difflib

from .config import ConfigError
from .experiments import attack, defense, persistence, server
from .experiments.spec import Experiment

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    attack.ONE_SHOT,
    persistence.DAMPENING,
    persistence.FINETUNE,
    attack.CHANCE,
    attack.DRAWS,
    attack.BOOST,
    defense.DEFENSE,
    defense.DEFENSE_DRAWS,
    defense.ADAPTIVE,
    defense.ABLATION,
    defense.DEFENSE_ROUNDS,
    defense.COST,
    server.SERVER_RULES,
    server.RULE_ADAPTIVE,
    server.RULE_COST,
)}


def get(name: str) -> Experiment:
    """The experiment called ``name``; :class:`~fmlbd.config.ConfigError` with the closest names if none is."""
    if name not in EXPERIMENTS:
        close = difflib.get_close_matches(name, EXPERIMENTS, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"choose one of {', '.join(EXPERIMENTS)}"
        raise ConfigError(f"unknown experiment {name!r}; {hint}")
    return EXPERIMENTS[name]


def names(command: str | None = None, default_only: bool = False) -> list[str]:
    """Names of the experiments run by ``command`` (all if None), in registry order."""
    return [n for n, e in EXPERIMENTS.items()
            if (command is None or e.command == command) and (e.default or not default_only)]
