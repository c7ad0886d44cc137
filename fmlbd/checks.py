"""Range checks of every config value, run when a config is built (see :mod:`fmlbd.config`); the
aggregation rules' settings are checked by the rules' registry (:mod:`fmlbd.rule_settings`).

Each rule returns ``None`` for a valid value or a phrase that completes "``<key>`` must be ...";
a bad value fails at once with the dotted key, the valid range and the value given.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from .labels import CASES

Rule = Callable[[Any], "str | None"]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def count(lo: int = 1, hi: int | None = None) -> Rule:
    """An integer in ``lo..hi``."""
    want = f"an integer >= {lo}" if hi is None else f"an integer in {lo}..{hi}"
    return lambda v: None if _is_int(v) and v >= lo and (hi is None or v <= hi) else want


def number(lo: float = 0.0, strict: bool = True, hi: float | None = None) -> Rule:
    """A finite number > lo (>= lo when not ``strict``), at most ``hi``."""
    want = f"a finite number {'>' if strict else '>='} {lo:g}" + (f" and <= {hi:g}" if hi is not None else "")

    def rule(v):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ok = ok and (v > lo if strict else v >= lo) and (hi is None or v <= hi)
        return None if ok else want
    return rule


def choice(*options: Any) -> Rule:
    return lambda v: None if v in options else f"one of {', '.join(map(repr, options))}"


def flag(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def text(v: Any) -> str | None:
    return None if isinstance(v, str) and v else "a non-empty string"


def device(v: Any) -> str | None:
    """A torch device name: "cpu", "cuda", "cuda:N" or "mps"."""
    ok = isinstance(v, str) and (v in ("cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit()))
    return None if ok else '"cpu", "cuda", "cuda:N" or "mps"'


def optional(rule: Rule) -> Rule:
    return lambda v: None if v is None else (None if rule(v) is None else f"none or {rule(v)}")


def tuple_of(rule: Rule, nonempty: bool = True) -> Rule:
    def check(v):
        if not isinstance(v, tuple) or (nonempty and not v):
            return "a non-empty list" if nonempty else "a list"
        bad = [x for x in v if rule(x) is not None]
        return f"a list of {rule(bad[0])}" if bad else None
    return check


KERNELS = ("softmax", "class_max", "topk")                  #: attention kernels (fmlbd.attention)
ALGORITHMS = ("reptile", "fomaml", "matching")              #: meta-updates (fmlbd.meta.META_STEPS)
OMNIGLOT_SOURCES = ("minimal", "full")                      #: Omniglot zip sets (fmlbd.data)

#: upper bounds where a larger value makes a run impossible on any machine this project targets, or its
#: result meaningless by construction (a learning rate that diverges, a temperature whose softmax overflows)
ROUNDS_MAX, EPISODES_MAX, STEPS_MAX, LR_MAX = 10**6, 10**6, 10**5, 10.0
TEMPERATURE = (1e-4, True, 1e4)                             #: softmax temperatures: above 1e-4, at most 1e4

RULES: dict[str, Rule] = {
    "profile": text, "seed": count(0, 2**63 - 1), "results_dir": text, "case": choice(*CASES), "shipped_models": flag,
    "device": device,
    "data.dataset": choice("omniglot", "mini-imagenet"), "data.root": text, "data.source": choice(*OMNIGLOT_SOURCES),
    "data.test_alphabets": tuple_of(text, nonempty=False), "data.image_size": count(16, 512),
    "data.rotations": choice(1, 2, 4),
    "model.filters": count(1, 1024),
    "meta.algorithm": choice(*ALGORITHMS), "meta.ways": count(2), "meta.shots": count(1), "meta.queries": count(1),
    "meta.zero_head": flag, "meta.inner_optimizer": choice("sgd", "adam"), "meta.inner_steps": count(1, STEPS_MAX),
    "meta.inner_lr": number(hi=LR_MAX), "meta.inner_head_lr": optional(number(hi=LR_MAX)), "meta.inner_batch": count(0, 10**4),
    "meta.meta_lr": number(hi=LR_MAX), "meta.local_iterations": count(1, STEPS_MAX), "meta.matching_temperature": number(*TEMPERATURE),
    "federation.clients": count(1, 10**4), "federation.buffer_size": count(1), "federation.server_lr": number(hi=LR_MAX),
    "federation.rounds": count(1, ROUNDS_MAX), "federation.delay_spread": number(strict=False, hi=1e6),
    "federation.checkpoint_every": count(1, ROUNDS_MAX),
    "eval.ways": count(2), "eval.shots": count(1), "eval.queries": count(1), "eval.episodes": count(1, EPISODES_MAX),
    "eval.log_every": count(1, ROUNDS_MAX), "eval.log_episodes": count(1, EPISODES_MAX), "eval.finetune_steps": count(1, STEPS_MAX),
    "eval.finetune_lr": number(hi=LR_MAX),
    "attack.backdoor_classes": count(1), "attack.attack_train_images": count(1),
    "attack.key_pattern": choice("dots", "patch"), "attack.key_row": count(-10**6), "attack.key_col": count(-10**6),
    "attack.key_size": count(1), "attack.key_gap": count(0), "attack.key_value": number(0, False, 1),
    "attack.target_label": optional(count(0)), "attack.poison_per_episode": count(0), "attack.poison_support": flag,
    "attack.attack_iterations": count(1, STEPS_MAX), "attack.draw": count(0), "attack.boost": optional(number(hi=1000)),
    "attack.after_attack": choice("benign", "silent"), "attack.poison_rounds": count(1, 1000),
    "attack.norm_cap": optional(number(hi=1000)), "attack.disguise_z": optional(number(hi=1000)),
    "attack.benign_samples": count(2, 1000),
    "measure.draws": count(1, 1000), "measure.rule_draws": count(1, 1000),
    "measure.dampening_rounds": count(1, ROUNDS_MAX),
    "measure.rule_rounds": count(1, ROUNDS_MAX), "measure.rule_main_task": flag, "measure.curve_every": count(1, ROUNDS_MAX),
    "measure.curve_episodes": count(1, EPISODES_MAX), "measure.finetune_max_steps": count(1, STEPS_MAX),
    "measure.finetune_trials": count(1, EPISODES_MAX),
    "measure.finetune_eval_every": count(1, STEPS_MAX),
    "defense.shared_model": choice("features", "head"), "defense.train_inner_steps": count(1, STEPS_MAX),
    "defense.train_shots": count(1), "defense.kernel": choice(*KERNELS), "defense.temperature": number(*TEMPERATURE),
    "defense.k": count(1, 10**4), "defense.ablation_kernels": tuple_of(choice(*KERNELS)),
    "defense.ablation_temperatures": tuple_of(number()), "defense.ablation_shots": tuple_of(count(1)),
    "defense.cost_episodes": count(1, EPISODES_MAX),
    # fmlbd.backdoor.BackdoorKey (the attack.key_* values, checked again where a key is built)
    "key.pattern": choice("dots", "patch"), "key.size": count(1), "key.gap": count(0), "key.value": number(0, False, 1),
    "key.row": count(-10**6), "key.col": count(-10**6),
}


def check_values(prefix: str, values: dict[str, Any], rules: dict[str, Rule] = RULES) -> str | None:
    """The first broken rule of ``rules`` (dotted key -> rule) among ``values`` (field -> value) of
    section ``prefix`` ("" = top level), as a one-line message; None when all hold."""
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else name
        rule = rules.get(key)
        problem = rule(value) if rule else None
        if problem:
            return f"{key} must be {problem}, not {value!r}"
    return None


def key_extent(pattern: str, size: int, gap: int) -> int:
    """Pixels per side covered by a key (see :class:`~fmlbd.backdoor.BackdoorKey`)."""
    return 2 * size + gap if pattern == "dots" else size


def key_problem(row: int, col: int, extent: int, height: int, width: int) -> str | None:
    """Why a key of ``extent`` at (row, col) does not fit an image, or None."""
    for name, at, side in (("row", row, height), ("col", col, width)):
        start = at + side if at < 0 else at
        if not 0 <= start <= side - extent:
            return (f"key_{name}={at} puts a key of {extent} pixels outside a {height}x{width} image: use "
                    f"{-side}..{side - extent} (negative values count from the {'bottom' if name == 'row' else 'right'})")
    return None


def check_experiment(cfg) -> str | None:
    """Rules that involve several sections of an :class:`~fmlbd.config.ExperimentConfig`."""
    m, e, f, a, d = cfg.meta, cfg.eval, cfg.federation, cfg.attack, cfg.data
    if e.ways > m.ways and not m.zero_head and m.algorithm != "matching":
        return (f"eval.ways={e.ways} exceeds meta.ways={m.ways}, and the head was trained with meta.ways outputs: "
                f"lower eval.ways or train with meta.zero_head=true (a zeroed head is rebuilt at any width)")
    if f.buffer_size > f.clients:
        return (f"federation.buffer_size={f.buffer_size} exceeds federation.clients={f.clients}: the server would "
                f"wait forever; use 1..{f.clients}")
    if a.target_label is not None and a.target_label >= min(m.ways, e.ways):
        return f"attack.target_label={a.target_label} must be a label of a {min(m.ways, e.ways)}-way episode (0..{min(m.ways, e.ways) - 1})"
    problem = key_problem(a.key_row, a.key_col, key_extent(a.key_pattern, a.key_size, a.key_gap), d.image_size,
                          d.image_size)
    return f"attack.{problem}" if problem else None
