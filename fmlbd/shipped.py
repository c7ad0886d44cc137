"""The pre-trained models shipped with fmlbd: named for what they are, found by their config's key,
loaded only with the SHA-256 their manifest lists.

Each file (:data:`SHIPPED`) holds the federation state, log and config of a model and the
:func:`fmlbd.fingerprint.reference_trace` of the code that trained it; every test run checks that
the current code trains the same model.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

from .cache import cache_key
from .config import ExperimentConfig
from .errors import CacheError
from .results import atomic_write
from .splits import Scenario

#: the shipped models' folder: ``<profile>-<meta-update>-<server rule>-case-<case>-seed<seed>-<model key>.pt``
SHIPPED = Path(__file__).parent / "pretrained"


def model_key(cfg: ExperimentConfig, scenario: Scenario) -> str:
    """The key of the benign pre-trained model's config (not of where the data lives, so the CLI and
    the notebooks, which reach ``data/`` by different paths, share it); shipped models carry it."""
    on = {} if cfg.device == "cpu" else {"device": cfg.device}  # a GPU's sums differ from the CPU's in the last digits
    return cache_key(cfg, "data", "model", "meta", "federation", "eval", "seed", scenario=scenario.fingerprint(), **on)


def shipped_name(config: Mapping[str, Any], key: str) -> str:
    """A shipped model's file name: what it is (profile, meta-update, server rule, case, seed of its saved
    ``config``, a :meth:`~fmlbd.config.ExperimentConfig.to_dict`), then its cache ``key``."""
    return (f"{config['profile']}-{config['meta']['algorithm']}-{config['federation']['aggregation']}-"
            f"case-{config['case']}-seed{config['seed']}-{key}.pt")


def shipped_model(cfg: ExperimentConfig, scenario: Scenario) -> Path | None:
    """The shipped model with the :func:`model_key` of ``cfg`` and ``scenario``, if ``cfg.shipped_models``
    allows it and it exists. Found by the config's key alone: every test run checks that each shipped
    model is what the current code trains (its :func:`fmlbd.fingerprint.reference_trace`)."""
    found = sorted(SHIPPED.glob(f"*-{model_key(cfg, scenario)}.pt"))
    if len(found) > 1:
        raise CacheError(f"{', '.join(p.name for p in found)} share one cache key: keep one (scripts/ship_pretrained.py)")
    return found[0] if cfg.shipped_models and found else None


#: ``sha256sum`` lines (digest, two spaces, file name) of every shipped model
SHIPPED_SUMS = SHIPPED / "SHA256SUMS"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_shipped_sums() -> None:
    """List every shipped model's SHA-256 in :data:`SHIPPED_SUMS` (after shipping models)."""
    lines = [f"{file_sha256(p)}  {p.name}\n" for p in sorted(SHIPPED.glob("*.pt"))]
    atomic_write(SHIPPED_SUMS, lambda f: f.write("".join(lines).encode()))


def check_shipped(path: Path) -> None:
    """:class:`~fmlbd.errors.CacheError` unless the shipped model ``path`` has the SHA-256 that
    :data:`SHIPPED_SUMS` lists for it (a changed or foreign file is never loaded)."""
    sums = dict(line.split()[::-1] for line in SHIPPED_SUMS.read_text().splitlines() if line.strip())
    if sums.get(path.name) != file_sha256(path):
        raise CacheError(f"{path} does not have the SHA-256 that {SHIPPED_SUMS.name} lists for it (changed or not "
                         f"shipped with fmlbd): not loaded. Reinstall fmlbd, or set shipped_models=false to train "
                         f"the model instead")
