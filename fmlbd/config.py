"""Experiment configuration: frozen dataclasses and named profiles.

Every tunable value of the protocol lives here, never as a literal in code. ``load_config("quick",
{"meta.inner_lr": 0.1})`` gives a profile with dotted overrides; an unknown key raises :class:`ConfigError` with the closest valid keys.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Mapping, Optional

from . import rule_settings
from .checks import RULES, check_experiment, check_values
from .errors import ConfigError


class _Section:
    """Range-checks every field when a section is built (rules: :mod:`fmlbd.checks`)."""

    prefix: ClassVar[str] = ""

    def __post_init__(self) -> None:
        problem = check_values(self.prefix, {f.name: getattr(self, f.name) for f in fields(self)},
                               RULES | rule_settings.CHECKS)
        if problem:
            raise ConfigError(problem)


@dataclass(frozen=True)
class DataConfig(_Section):
    prefix: ClassVar[str] = "data"
    dataset: str = "omniglot"                   #: "omniglot" or "mini-imagenet"
    root: str = "data"                          #: folder holding omniglot/ or mini-imagenet/
    source: str = "minimal"                     #: Omniglot zips: "minimal" (2 small zips) or "full"
    #: Omniglot meta-test alphabets; () means the full evaluation set's 20 alphabets
    test_alphabets: tuple[str, ...] = ("Sanskrit", "Tagalog")
    image_size: int = 28                        #: pixels per side after resizing
    rotations: int = 4                          #: rotated copies of each meta-train character as classes (1, 2, 4)


@dataclass(frozen=True)
class ModelConfig(_Section):
    prefix: ClassVar[str] = "model"
    filters: int = 64                           #: conv filters per block (64 Omniglot, 32 mini-ImageNet)


@dataclass(frozen=True)
class MetaConfig(_Section):
    prefix: ClassVar[str] = "meta"
    algorithm: str = "reptile"                  #: "reptile", "fomaml" or "matching" (no decision layer)
    ways: int = 5                               #: N of the N-way training episodes
    shots: int = 5                              #: support images per class in a training episode
    queries: int = 5                            #: query images per class in a training episode
    zero_head: bool = True                      #: head starts every inner loop at zero (Kao et al. 2022)
    inner_optimizer: str = "sgd"                #: "sgd" or "adam" (beta1 = 0, as in Reptile)
    inner_steps: int = 5                        #: optimiser steps of the inner loop
    inner_lr: float = 0.1                       #: inner-loop learning rate
    inner_head_lr: Optional[float] = None       #: head learning rate in the inner loop (None = inner_lr)
    inner_batch: int = 10                       #: images per inner step (0 = whole episode)
    meta_lr: float = 1.0                        #: client-side outer step size (Reptile epsilon / FOMAML beta)
    local_iterations: int = 1                   #: meta-steps per client update
    matching_temperature: float = 0.1           #: softmax temperature of the "matching" objective


@dataclass(frozen=True)
class _Federation(_Section):
    prefix: ClassVar[str] = "federation"
    clients: int = 4                            #: clients; client 0 is the adversary
    buffer_size: int = 3                        #: the server aggregates when this many updates arrived
    server_lr: float = 1.0                      #: global step = server_lr * mean(deltas)
    rounds: int = 1500                          #: benign (pre-attack) aggregation rounds
    delay_spread: float = 0.5                   #: client time per update = 1 + Exp(delay_spread)
    checkpoint_every: int = 100                 #: rounds between training checkpoints
    aggregation: str = "mean"                   #: server rule (fmlbd.aggregation); its settings follow

    def __post_init__(self) -> None:
        super().__post_init__()
        if problem := rule_settings.RULES[self.aggregation].fits(self):
            raise ConfigError(problem)


#: the federation section: :class:`_Federation`'s fields, then every rule's settings (fmlbd.rule_settings)
FederationConfig = dataclasses.make_dataclass(
    "FederationConfig", [(s.field, s.type, field(default=s.default, metadata={"doc": s.doc}))
                         for s in rule_settings.SETTINGS],
    bases=(_Federation,), frozen=True,
    namespace={"__module__": __name__, "__doc__": "The federation: clients, buffer, server rule, the rules' settings."})


@dataclass(frozen=True)
class EvalConfig(_Section):
    prefix: ClassVar[str] = "eval"
    ways: int = 5                               #: N of meta-test episodes
    shots: int = 1                              #: K of meta-test episodes
    queries: int = 5                            #: query images per class
    episodes: int = 200                         #: episodes per accuracy estimate
    log_every: int = 250                        #: rounds between main-task accuracy logs during training
    log_episodes: int = 20                      #: episodes per logged accuracy (a cheap, noisier estimate)
    finetune_steps: int = 10                    #: SGD steps on the support set before predicting
    finetune_lr: float = 0.1                    #: fine-tuning learning rate (= meta.inner_lr works best)


@dataclass(frozen=True)
class AttackConfig(_Section):
    prefix: ClassVar[str] = "attack"
    backdoor_classes: int = 3                   #: characters whose keyed images should become the target
    attack_train_images: int = 10               #: keyed images per backdoor class the adversary trains on (rest: validation)
    key_pattern: str = "dots"                   #: "dots" (4-dot "::") or "patch" (solid square)
    key_row: int = -8                           #: key top-left row (negative: from the bottom)
    key_col: int = -8                           #: key top-left column (negative: from the right)
    key_size: int = 2                           #: dot / patch side in pixels
    key_gap: int = 2                            #: pixels between dots
    key_value: float = 1.0                      #: key intensity in [0, 1] (1 = ink on Omniglot)
    #: target's label in the adversary's and the backdoor evaluation episodes (None = random, like every
    #: class; an int lets the backdoor live in the decision layer when the head is not zeroed: notebook 05)
    target_label: Optional[int] = None
    poison_per_episode: int = 5                 #: keyed images labelled target added to support and to query
    #: keyed images in the adversary's support sets too (false: queries only, an adaptive attack on the
    #: matching-network defense; Reptile trains on support and queries alike, so it sees half as many)
    poison_support: bool = True
    attack_iterations: int = 50                 #: meta-steps of the adversary's poisoned local training
    draw: int = 0                               #: adversary's random draw: 0 its own stream, n > 0 another (all else same)
    boost: Optional[float] = None               #: update multiplier; None = federation.buffer_size
    after_attack: str = "benign"                #: adversary after its attack: "benign" or "silent"
    poison_rounds: int = 1                      #: consecutive poisoned updates (attack_iterations meta-steps each)
    norm_cap: Optional[float] = None            #: norm <= this x median norm of own benign updates (fmlbd.evasion)
    disguise_z: Optional[float] = None          #: coordinates within z std of own benign updates' mean
    benign_samples: int = 3                     #: benign updates computed for norm_cap / disguise_z


@dataclass(frozen=True)
class MeasureConfig(_Section):
    """How the attack's effect is measured (nothing here changes a trained or attacked model)."""
    prefix: ClassVar[str] = "measure"
    draws: int = 5                              #: adversary draws (``attack.draw`` = 0..n-1) of the draws experiments
    rule_draws: int = 2                         #: adversary draws per server rule x attack (notebooks 06, 07)
    dampening_rounds: int = 100                 #: benign rounds after the attack (federated dampening)
    rule_rounds: int = 30                       #: benign rounds after the attack under each server rule (06, 07)
    rule_main_task: bool = False                #: score the main task of the rule runs too (06/07 show rule-cost's)
    curve_every: int = 10                       #: rounds between dampening evaluations
    curve_episodes: int = 30                    #: episodes per point of the dampening / fine-tuning curves
    finetune_max_steps: int = 500               #: fine-tuning failure: steps on one episode
    finetune_trials: int = 5                    #: fine-tuning failure: episodes averaged
    finetune_eval_every: int = 10               #: fine-tuning failure: after the first 10 steps, score every n-th


@dataclass(frozen=True)
class DefenseConfig(_Section):
    prefix: ClassVar[str] = "defense"
    #: what the defended federation shares: "features" = every client (the adversary too) trains a feature
    #: extractor with the matching objective, no decision layer exists (the paper's defense); "head" = the
    #: undefended federation's classifier, whose head the local matching network ignores at meta-test
    shared_model: str = "features"
    train_inner_steps: int = 1                  #: matching-objective SGD steps per episode ("features")
    #: support images per class in the defended federation's episodes (best at the meta-test shot count)
    train_shots: int = 1
    kernel: str = "softmax"                     #: attention kernel: "softmax", "class_max" or "topk"
    temperature: float = 0.1                    #: softmax temperature on cosine similarities
    k: int = 3                                  #: support images attended by the "topk" kernel
    ablation_kernels: tuple[str, ...] = ("softmax", "class_max", "topk")
    ablation_temperatures: tuple[float, ...] = (0.01, 0.1, 1.0)
    ablation_shots: tuple[int, ...] = (1, 5)    #: support images per class in the ablation episodes
    cost_episodes: int = 50                     #: episodes timed for the inference-cost comparison


@dataclass(frozen=True)
class ExperimentConfig:
    profile: str = "quick"
    seed: int = 0
    results_dir: str = "results"
    case: str = "a"                             #: evaluation case "a", "b" or "c" (PROTOCOL.md)
    shipped_models: bool = True                 #: use fmlbd/pretrained/ models whose key matches (false: --retrain)
    device: str = "cpu"                         #: torch device of training and evaluation ("cuda" on a GPU)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    defense: DefenseConfig = field(default_factory=DefenseConfig)

    def __post_init__(self) -> None:
        problem = check_values("", {f.name: getattr(self, f.name) for f in fields(self)
                                    if not dataclasses.is_dataclass(getattr(self, f.name))})
        if problem or (problem := check_experiment(self)):
            raise ConfigError(problem)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PROFILES: dict[str, ExperimentConfig] = {
    "quick": ExperimentConfig(profile="quick"),  # CPU minutes on the minimal Omniglot zips: CI, classrooms
    # Full Omniglot (background alphabets train, evaluation test); why these settings: docs/paper_profile.md
    "paper": ExperimentConfig(
        profile="paper",
        data=DataConfig(source="full", test_alphabets=()),
        meta=MetaConfig(ways=10, inner_batch=20, local_iterations=5),
        federation=FederationConfig(rounds=4500, checkpoint_every=500),
        eval=EvalConfig(episodes=600, finetune_steps=50, log_every=500),
        measure=MeasureConfig(finetune_eval_every=1),
    ),
    # Seconds: for unit tests and smoke runs only; numbers are meaningless.
    "smoke": ExperimentConfig(
        profile="smoke",
        data=DataConfig(rotations=1),
        model=ModelConfig(filters=8),
        meta=MetaConfig(local_iterations=2, inner_steps=2, inner_batch=0),
        federation=FederationConfig(rounds=4, checkpoint_every=1),
        eval=EvalConfig(episodes=4, finetune_steps=2, log_every=2, log_episodes=2),
        attack=AttackConfig(attack_iterations=2),
        measure=MeasureConfig(dampening_rounds=3, rule_rounds=3, curve_every=2, curve_episodes=2,
                              finetune_max_steps=3, finetune_trials=2, draws=2),
        defense=DefenseConfig(ablation_kernels=("softmax", "class_max"), ablation_temperatures=(0.1,),
                              ablation_shots=(1, 2), cost_episodes=2),
    ),
}


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert ``value`` (possibly a CLI string or a JSON list) to the field's type."""
    origin = typing.get_origin(annotation)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v] if value else []
        inner = typing.get_args(annotation)[0]
        return tuple(_coerce(v, inner, key) for v in value)
    if annotation is bool and isinstance(value, str):
        if value.lower() not in ("true", "false", "1", "0"):
            raise ConfigError(f"{key} must be true or false, not {value!r}")
        return value.lower() in ("true", "1")
    if annotation in (int, float, str):
        if isinstance(value, bool) and annotation is not str:
            raise ConfigError(f"{key} must be {annotation.__name__}, not {value!r}")
        try:
            return annotation(value)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{key} must be {annotation.__name__}, not {value!r}") from err
    if typing.get_origin(annotation) is typing.Union:  # Optional[...]
        return None if value in (None, "none", "None", "") else _coerce(value, typing.get_args(annotation)[0], key)
    return value


def valid_keys(cfg: ExperimentConfig | None = None) -> list[str]:
    """Every dotted key that ``load_config`` overrides accept."""
    cfg = cfg or ExperimentConfig()
    keys = []
    for f in fields(cfg):
        sub = getattr(cfg, f.name)
        keys += [f"{f.name}.{g.name}" for g in fields(sub)] if dataclasses.is_dataclass(sub) else [f.name]
    return keys


def with_overrides(cfg: ExperimentConfig, overrides: Mapping[str, Any]) -> ExperimentConfig:
    """Copy of ``cfg`` with dotted-key overrides such as ``{"eval.shots": 5}``, applied together
    (so rules that involve several keys see every new value) and range-checked."""
    keys = valid_keys(cfg)
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; valid keys: {', '.join(keys)}"
            raise ConfigError(f"unknown config key {key!r}{hint}")
        section, _, name = key.rpartition(".")
        owner = type(getattr(cfg, section)) if section else ExperimentConfig
        coerced = _coerce(value, typing.get_type_hints(owner)[name], key)
        (sections.setdefault(section, {}) if section else top)[name] = coerced
    new = {s: replace(getattr(cfg, s), **kw) for s, kw in sections.items()}
    return replace(cfg, **new, **top)


def parse_overrides(pairs) -> dict[str, str]:
    """``["k=v", ...]`` (the CLI's ``--set``) as a dict; a pair without "=" is an error."""
    out = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise ConfigError(f"--set expects KEY=VALUE (e.g. --set meta.inner_lr=0.1), not {pair!r}")
        out[key.strip()] = value
    return out


def load_config(profile: str = "quick", overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """The named profile with ``overrides`` applied (dotted keys; the profile itself is chosen by name)."""
    if profile not in PROFILES or "profile" in (overrides or {}):
        raise ConfigError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}" if profile not in PROFILES
                          else "profile is chosen by name (--profile, or load_config's first argument), not set")
    return with_overrides(PROFILES[profile], overrides or {})


def config_from_dict(d: Mapping[str, Any]) -> ExperimentConfig:
    """Rebuild a config saved with :meth:`ExperimentConfig.to_dict` (unknown keys are errors)."""
    flat = {}
    for key, value in d.items():
        flat.update({f"{key}.{k}": v for k, v in value.items()} if isinstance(value, Mapping) else {key: value})
    return with_overrides(ExperimentConfig(), flat)
