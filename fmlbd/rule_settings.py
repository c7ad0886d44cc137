"""The server's aggregation rules as the config sees them: each rule's name, class and settings.

This is the rules' registry (no torch, so the config and its checks read it). A rule is one
:class:`RuleSpec` in :data:`RULES`: the name of its class in :mod:`fmlbd.aggregation` and its
settings. A :class:`Setting` is a field of the ``federation`` config section
(``federation.<field>``), range-checked when a config is built and handed to the class as ``arg``;
``fits(federation)`` checks the settings against the rest of that section. Cache keys read only
the settings of the rule in use (:func:`read_by_rule`), so a new rule changes no existing key.
Adding a rule: its class in :mod:`fmlbd.aggregation` and its line here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from .checks import ROUNDS_MAX, Rule, choice, count, number, optional


@dataclass(frozen=True)
class Setting:
    """One setting of a rule: config field ``federation.<field>``, the class's argument ``arg``."""

    field: str
    arg: str
    type: Any
    default: Any
    check: Rule
    doc: str


def _fits_nothing(federation: Any) -> str | None:
    return None


@dataclass(frozen=True)
class RuleSpec:
    """A rule: its class's name in :mod:`fmlbd.aggregation`, its settings, whether it draws random
    numbers (then built with the run's seed as ``seed``) and a check of its settings against the
    federation section (the object, e.g. its ``buffer_size``), run when the rule is in use."""

    cls: str
    settings: tuple[Setting, ...] = ()
    seeded: bool = False
    fits: Callable[[Any], Optional[str]] = _fits_nothing


def _krum_fits(f) -> str | None:
    if f.krum_byzantine >= f.buffer_size:
        return (f"federation.krum_byzantine={f.krum_byzantine} assumes every one of the {f.buffer_size} updates of a "
                f"round (federation.buffer_size) malicious, leaving Multi-Krum none to keep: use 0..{f.buffer_size - 1}")
    return None


def _trim_fits(f) -> str | None:
    if f.buffer_size <= 2 * f.trim:
        return (f"federation.trim={f.trim} drops {2 * f.trim} of the {f.buffer_size} updates of a round "
                f"(federation.buffer_size): use trim <= {(f.buffer_size - 1) // 2}")
    return None


#: name -> rule (the order of the config's fields and of every listing)
RULES: dict[str, RuleSpec] = {
    "mean": RuleSpec("Mean"),
    "norm_clip": RuleSpec("NormClip", (
        Setting("clip_norm", "bound", Optional[float], None, optional(number()),
                "norm_clip bound (None = median norm of recent updates)"),
        Setting("clip_window", "window", int, 30, count(1, ROUNDS_MAX),
                "norm_clip: updates whose median norm is the bound"))),
    "median": RuleSpec("Median"),
    "trimmed_mean": RuleSpec("TrimmedMean", (
        Setting("trim", "trim", int, 1, count(1, 10**4), "trimmed_mean: updates dropped at each end, per coordinate"),),
        fits=_trim_fits),
    "multi_krum": RuleSpec("MultiKrum", (
        Setting("krum_byzantine", "byzantine", int, 1, count(0, 10**4), "multi_krum: updates assumed malicious per round"),),
        fits=_krum_fits),
    "flame": RuleSpec("Flame", (
        Setting("flame_noise", "noise", float, 0.0, number(strict=False, hi=100),
                "flame: noise standard deviation, in units of the clip norm"),), seeded=True),
    "geometric_median": RuleSpec("GeometricMedian", (
        Setting("geomed_iterations", "iterations", int, 10, count(1, 10**4),
                "geometric_median: smoothed Weiszfeld iterations at most"),
        Setting("geomed_smoothing", "smoothing", float, 1e-6, number(hi=1.0),
                "geometric_median: smallest distance a weight divides by"))),
}

#: every rule's settings, in :data:`RULES` order (the federation section's last fields)
SETTINGS: tuple[Setting, ...] = tuple(s for spec in RULES.values() for s in spec.settings)
#: range checks of ``federation.aggregation`` and every setting, by dotted key (see :mod:`fmlbd.checks`)
CHECKS: dict[str, Rule] = {"federation.aggregation": choice(*RULES),
                           **{f"federation.{s.field}": s.check for s in SETTINGS}}


def read_by_rule(federation: Mapping[str, Any]) -> dict[str, Any]:
    """The federation section (a dict) without the settings of the rules not in use."""
    unread = {s.field for name, spec in RULES.items() if name != federation["aggregation"] for s in spec.settings}
    return {k: v for k, v in federation.items() if k not in unread}


def arguments(federation: Any, seed: int) -> dict[str, Any]:
    """The keyword arguments of the rule in use, read from the federation section (the object)."""
    spec = RULES[federation.aggregation]
    return {s.arg: getattr(federation, s.field) for s in spec.settings} | ({"seed": seed} if spec.seeded else {})
