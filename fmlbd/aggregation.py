"""Server-side aggregation rules: one step of the global model from the updates of a round.

A rule sees the round's updates as a matrix ``[n, D]`` (row i: client i's delta, flattened, in
arrival order; stale updates included) and returns ``(step [D], weights [n])``: the aggregated
delta and how much each update counted in it (``1/n`` each for the mean, 0 for a dropped update,
a clipped update's scale / n). The server applies ``global += server_lr * step``.

Every rule here reads each client's whole update in the clear; its ``sees`` attribute says what
it computes from, and ``explain(updates, step)`` gives, per update, the number it decided on
(named by ``explains``). That is the privacy cost that a local defense (:mod:`fmlbd.defense`) avoids.
Rules with memory (a window of recent norms, a noise generator) keep it in ``state_dict()``, so a
resumed federation aggregates as an uninterrupted one. :data:`AGGREGATIONS` names them all; each
rule's settings are declared in :mod:`fmlbd.rule_settings`, the registry the config reads.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from .rule_settings import RULES

Step = tuple[torch.Tensor, torch.Tensor]


class AggregationRule(ABC):
    """A server rule: ``rule(updates [n, D]) -> (step [D], weights [n])``; ``sees``: what it reads of
    the updates; ``explain(updates, step) [n]``: the per-update number it decided on (named by
    ``explains``); ``state_dict()``: its memory between rounds (none unless overridden)."""

    sees: ClassVar[str]
    explains: ClassVar[str]

    @abstractmethod
    def __call__(self, updates: torch.Tensor) -> Step:
        """The round's step and each update's weight in it."""

    @abstractmethod
    def explain(self, updates: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """Per update, the number the rule decided on."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (nothing to restore by default)."""


class Mean(AggregationRule):
    """The plain mean (the protocol's server)."""

    sees = "each update's values"
    explains = "weight"

    def __call__(self, updates: torch.Tensor) -> Step:
        n = len(updates)
        return updates.mean(0), torch.full((n,), 1.0 / n)

    def explain(self, updates: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        return torch.full((len(updates),), 1.0 / len(updates))


@dataclass
class NormClip(AggregationRule):
    """Each update scaled to an L2 norm of at most ``bound``, then the mean. ``bound=None``: the
    median norm of the last ``window`` updates received (this round's included), so the bound
    follows the benign updates' size."""

    sees: ClassVar[str] = "each update's values and norm"
    explains: ClassVar[str] = "clip scale"
    bound: float | None = None
    window: int = 30
    recent: list[float] = field(default_factory=list)

    def __call__(self, updates: torch.Tensor) -> Step:
        self.recent = (self.recent + updates.norm(dim=1).tolist())[-self.window:]
        scale = self.explain(updates)
        return (updates * scale[:, None]).mean(0), scale / len(updates)

    def explain(self, updates: torch.Tensor, step: torch.Tensor | None = None) -> torch.Tensor:
        """Each update's scale under the current bound (after the round: this round's norms counted)."""
        bound = self.bound if self.bound is not None else float(torch.tensor(self.recent).median())
        return torch.clamp(bound / updates.norm(dim=1).clamp_min(1e-12), max=1.0)

    def state_dict(self) -> dict:
        return {"recent": list(self.recent)}

    def load_state_dict(self, state: dict) -> None:
        self.recent = list(state["recent"])


class Median(AggregationRule):
    """Coordinate-wise median (the lower one for an even count); the weights report 1/n (no update is
    dropped as a whole)."""

    sees = "each update's values, coordinate by coordinate"
    explains = "share of coordinates taken"

    def __call__(self, updates: torch.Tensor) -> Step:
        n = len(updates)
        return updates.median(0).values, torch.full((n,), 1.0 / n)

    def explain(self, updates: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """Per update, the share of the step's coordinates that are its value (ties count for each)."""
        return (updates == step[None]).float().mean(1)


@dataclass
class TrimmedMean(AggregationRule):
    """Coordinate-wise mean after dropping the ``trim`` largest and ``trim`` smallest values of each
    coordinate (needs more than ``2 * trim`` updates; with 3 updates and trim 1 it is the median)."""

    sees: ClassVar[str] = "each update's values, coordinate by coordinate"
    explains: ClassVar[str] = Median.explains
    explain = Median.explain

    trim: int = 1

    def __call__(self, updates: torch.Tensor) -> Step:
        n = len(updates)
        if n <= 2 * self.trim:
            raise ValueError(f"trimmed mean drops {self.trim} updates at each end and needs more than "
                             f"{2 * self.trim}; the round has {n}")
        kept = updates.sort(0).values[self.trim:n - self.trim]
        return kept.mean(0), torch.full((n,), 1.0 / n)


@dataclass
class MultiKrum(AggregationRule):
    """Multi-Krum (Blanchard et al. 2017): each update scored by the summed squared distances to
    its ``n - byzantine - 2`` nearest other updates (at least 1), the ``keep`` best-scored ones
    averaged (``None``: ``n - byzantine``)."""

    sees: ClassVar[str] = "every pair of updates' distance, each update's values"
    explains: ClassVar[str] = "Krum score"

    byzantine: int = 1
    keep: int | None = None

    def explain(self, updates: torch.Tensor, step: torch.Tensor | None = None) -> torch.Tensor:
        """Each update's Krum score (lower is kept first)."""
        neighbours = max(1, len(updates) - self.byzantine - 2)
        distances = torch.cdist(updates[None], updates[None])[0] ** 2
        distances.fill_diagonal_(float("inf"))
        return distances.sort(1).values[:, :neighbours].sum(1)

    def __call__(self, updates: torch.Tensor) -> Step:
        n = len(updates)
        scores = self.explain(updates)
        keep = self.keep if self.keep is not None else max(1, n - self.byzantine)
        chosen = scores.argsort()[:keep]
        weights = updates.new_zeros(n)
        weights[chosen] = 1.0 / keep
        return weights @ updates, weights


@dataclass
class Flame(AggregationRule):
    """In the spirit of FLAME (Nguyen et al. 2022), for a handful of updates: keep the majority of
    updates that are closest in direction (the ``n // 2 + 1`` whose median cosine distance to the
    others is smallest, ties kept), clip the kept ones to the median norm of all updates, average,
    and add Gaussian noise of standard deviation ``noise`` x that norm (seeded)."""

    sees: ClassVar[str] = "every pair of updates' cosine, each update's norm and values"
    explains: ClassVar[str] = "median cosine distance"

    noise: float = 0.0
    seed: int = 0
    generator: torch.Generator = field(init=False, repr=False)

    def __post_init__(self):
        self.generator = torch.Generator().manual_seed(self.seed)

    def explain(self, updates: torch.Tensor, step: torch.Tensor | None = None) -> torch.Tensor:
        """Each update's median cosine distance to the others (the majority with the smallest is kept)."""
        n = len(updates)
        if n == 1:
            return updates.new_zeros(1)
        unit = updates / updates.norm(dim=1).clamp_min(1e-12)[:, None]
        distance = 1 - unit @ unit.T
        return distance.masked_fill(torch.eye(n, dtype=torch.bool, device=updates.device), float("nan")).nanmedian(1).values

    def __call__(self, updates: torch.Tensor) -> Step:
        n = len(updates)
        norms = updates.norm(dim=1)
        spread = self.explain(updates)
        kept = spread <= spread.sort().values[n // 2]  # a majority: at least n // 2 + 1 updates
        bound = float(norms.median())
        scale = torch.where(kept, torch.clamp(bound / norms.clamp_min(1e-12), max=1.0), 0.0)
        weights = scale / int(kept.sum())
        step = weights @ updates
        if self.noise > 0:
            step = step + self.noise * bound * torch.randn(step.shape, generator=self.generator).to(step.device)
        return step, weights

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


@dataclass
class GeometricMedian(AggregationRule):
    """The geometric median of the updates (RFA, Pillutla et al. 2022): the point with the least summed
    L2 distance to them, by the smoothed Weiszfeld algorithm. From the mean, each step averages the
    updates weighted by 1 / max(``smoothing``, distance to the current point), at most ``iterations``
    steps, stopping once the summed distance improves by less than 1e-6 of itself. An update far from
    the others (a boosted one) gets a small weight, never zero."""

    sees: ClassVar[str] = "each update's distance to the current estimate of the median, each update's values"
    explains: ClassVar[str] = "weight"

    iterations: int = 10
    smoothing: float = 1e-6

    def _weights(self, distance: torch.Tensor) -> torch.Tensor:
        inverse = 1 / distance.clamp_min(self.smoothing)
        return inverse / inverse.sum()

    def explain(self, updates: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """Each update's Weiszfeld weight at ``step``: 1 / max(smoothing, distance), normalised to sum 1 (the
        weights of the next iteration: at convergence, each update's weight in the step)."""
        return self._weights((updates - step[None]).norm(dim=1))

    def __call__(self, updates: torch.Tensor) -> Step:
        weights = updates.new_full((len(updates),), 1.0 / len(updates))
        point = weights @ updates
        distance = (updates - point).norm(dim=1)  # each iteration measures the distances once
        for _ in range(self.iterations):
            weights = self._weights(distance)
            point = weights @ updates
            before, distance = distance, (updates - point).norm(dim=1)
            if float(before.sum()) - float(distance.sum()) <= 1e-6 * float(distance.sum()):
                break
        return point, weights


#: name -> rule class, as :data:`fmlbd.rule_settings.RULES` names them (built with its settings:
#: ``AGGREGATIONS[name](**fmlbd.rule_settings.arguments(cfg.federation, cfg.seed))``)
AGGREGATIONS: dict[str, type[AggregationRule]] = {name: globals()[spec.cls] for name, spec in RULES.items()}
