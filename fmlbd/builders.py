"""From a config to the objects of one experiment: data, scenario, model, clients, federation, attack sets.

Pure construction: nothing here trains, evaluates or caches.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from .aggregation import AGGREGATIONS
from .attention import Attention
from .backdoor import AttackSets, BackdoorKey, make_attack_sets, poisoned_episode
from .config import ExperimentConfig
from .data import ClassPool, DatasetError, load_mini_imagenet, load_omniglot, omniglot_evaluation_alphabets
from .episodes import check_episode_request, sample_episode
from .errors import ConfigError
from .clients import BenignClient, MaliciousClient
from .federated import Federation
from .functional import Params, get_params, zero_head
from .models import ConvNet
from .parallel import workers_for
from .rule_settings import arguments
from .splits import Scenario, make_scenario
from .streams import seed_model_init


def check_device(device: str) -> torch.device:
    """``device`` as a torch device, or a :class:`ConfigError` if this machine's torch cannot use it."""
    usable = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    kind = device.partition(":")[0]
    if not usable[kind] or (kind == "cuda" and ":" in device and int(device[5:]) >= torch.cuda.device_count()):
        raise ConfigError(f"device={device!r}: this machine's torch {torch.__version__} cannot use it; use --device cpu")
    return torch.device(device)


def load_pool(cfg: ExperimentConfig) -> tuple[ClassPool, tuple[str, ...]]:
    """The unrotated dataset of ``cfg.data`` on ``cfg.device`` and its meta-test groups (decoded images
    are cached beside the data, or under ``<results_dir>/cache/data`` when the data folder is read-only)."""
    d, device = cfg.data, check_device(cfg.device)
    fallback = Path(cfg.results_dir) / "cache" / "data"
    if d.dataset == "omniglot":
        pool, groups = load_omniglot(d.root, d.source, d.image_size, fallback), tuple(
            d.test_alphabets or omniglot_evaluation_alphabets(d.root))
    else:
        pool, groups = load_mini_imagenet(d.root, d.image_size, fallback), ("test",)
    return (pool if device.type == "cpu" else replace(pool, images=pool.images.to(device))), groups


def build_scenario(cfg: ExperimentConfig, case: str | None = None) -> Scenario:
    """Class ownership for ``cfg`` (``case`` overrides ``cfg.case``); checks that the data can serve
    the config's episodes before any training starts."""
    pool, test_groups = load_pool(cfg)
    rotations = cfg.data.rotations if cfg.data.dataset == "omniglot" else 1
    scenario = make_scenario(pool, test_groups, cfg.federation.clients, rotations, case or cfg.case,
                             cfg.attack.backdoor_classes, cfg.seed)
    m, e, a, d = cfg.meta, cfg.eval, cfg.attack, cfg.defense
    train, test = range(pool.num_classes), scenario.test_classes
    episodes = {"meta.ways / meta.shots / meta.queries": (m.ways, m.shots, m.queries, train),
                "eval.ways / eval.shots / eval.queries": (e.ways, e.shots, e.queries, test),
                "the defended federation's meta.ways / defense.train_shots / meta.queries":
                    (m.ways, d.train_shots, m.queries, train),
                **{f"the ablation's eval.ways / defense.ablation_shots={s} / eval.queries": (e.ways, s, e.queries, test)
                   for s in d.ablation_shots}}
    for names, (ways, shots, queries, classes) in episodes.items():
        try:
            check_episode_request(pool, classes, ways, shots, queries)
        except DatasetError as err:
            raise DatasetError(f"{names}: {err}") from None
    smallest = min(len(c) for c in scenario.client_classes)
    if smallest < m.ways:
        raise DatasetError(f"federation.clients={cfg.federation.clients}: the smallest client share holds {smallest} "
                           f"classes, fewer than meta.ways={m.ways}: use fewer clients, data.rotations=4 or the full data")
    if a.attack_train_images >= pool.images_per_class:
        raise DatasetError(f"attack.attack_train_images={a.attack_train_images} leaves no attack validation images: "
                           f"use 1..{pool.images_per_class - 1} ({pool.images_per_class} images per class)")
    return scenario


def build_model(cfg: ExperimentConfig, scenario: Scenario) -> ConvNet:
    """A freshly initialised network (seeded by ``cfg.seed``) sized for the data and ways."""
    images = scenario.pool.images
    seed_model_init(cfg.seed)  # initialised on the CPU, so every device starts from the same weights
    return ConvNet(images.shape[2], cfg.model.filters, cfg.meta.ways, images.shape[-1]).to(images.device)


def initial_params(cfg: ExperimentConfig, model: ConvNet) -> Params:
    """The model's initial weights (head zeroed when ``meta.zero_head``)."""
    params = get_params(model)
    return zero_head(params) if cfg.meta.zero_head else params


def episode_sampler(cfg: ExperimentConfig, scenario: Scenario, classes):
    """``sample(rng) -> Episode``: meta-training episodes over ``classes``."""
    m = cfg.meta
    return lambda rng: sample_episode(scenario.pool, classes, m.ways, m.shots, m.queries, rng)


def benign_clients(cfg: ExperimentConfig, scenario: Scenario) -> list[BenignClient]:
    return [BenignClient(episode_sampler(cfg, scenario, classes), cfg.meta) for classes in scenario.client_classes]


def make_federation(cfg: ExperimentConfig, model, params: Params, clients, workers: int | None = None) -> Federation:
    """The federation of ``cfg``; a round's clients train side by side in ``workers`` processes
    (default :func:`~fmlbd.parallel.workers_for`; the result does not depend on it)."""
    f = cfg.federation
    return Federation(model, params, clients, f.buffer_size, f.server_lr, f.delay_spread, cfg.seed,
                      workers_for(len(clients)) if workers is None else workers, aggregation_rule(cfg))


def aggregation_rule(cfg: ExperimentConfig):
    """The server's aggregation rule of ``cfg.federation`` with its settings (:mod:`fmlbd.rule_settings`)."""
    return AGGREGATIONS[cfg.federation.aggregation](**arguments(cfg.federation, cfg.seed))


def backdoor_key(cfg: ExperimentConfig) -> BackdoorKey:
    a = cfg.attack
    return BackdoorKey(a.key_pattern, a.key_row, a.key_col, a.key_size, a.key_gap, a.key_value)


def attack_sets(cfg: ExperimentConfig, scenario: Scenario, keyed: bool = True) -> AttackSets:
    """The attack training / validation sets (``keyed=False``: the same images without the key)."""
    return make_attack_sets(scenario.pool, scenario.backdoor_classes, backdoor_key(cfg) if keyed else None,
                            cfg.attack.attack_train_images)


def poisoned_sampler(cfg: ExperimentConfig, scenario: Scenario):
    """``sample(rng) -> Episode``: the adversary's poisoned training episodes (its own classes, the target,
    ``attack.poison_per_episode`` keyed images labelled target; see :func:`fmlbd.backdoor.poisoned_episode`)."""
    a, m = cfg.attack, cfg.meta
    sets = attack_sets(cfg, scenario)
    own = list(scenario.client_classes[0])
    return lambda rng: poisoned_episode(scenario.pool, own, scenario.target_class, m.ways, m.shots, m.queries,
                                        a.poison_per_episode, sets, rng, a.target_label, a.poison_support)


def boost(cfg: ExperimentConfig) -> float:
    """The adversary's update multiplier: ``attack.boost``, or the buffer size when unset (the protocol's)."""
    return cfg.attack.boost if cfg.attack.boost is not None else float(cfg.federation.buffer_size)


def attack_clients(cfg: ExperimentConfig, scenario: Scenario, attack_version: int) -> list:
    """Benign clients with client 0 replaced by the adversary of ``cfg.attack`` (the protocol's: one
    boosted poisoned update; see :class:`~fmlbd.clients.MaliciousClient` for the adaptive ones)."""
    a = cfg.attack
    clients = benign_clients(cfg, scenario)
    clients[0] = MaliciousClient(clients[0], poisoned_sampler(cfg, scenario), cfg.meta, a.attack_iterations, boost(cfg),
                                 attack_version, a.after_attack, a.poison_rounds, a.norm_cap, a.disguise_z,
                                 a.benign_samples)
    return clients


def default_attention(cfg: ExperimentConfig) -> Attention:
    """The local matching network's attention of ``cfg.defense``."""
    d = cfg.defense
    return Attention(d.kernel, d.temperature, d.k)


def native_attention(cfg: ExperimentConfig) -> Attention | None:
    """How a model trained under ``cfg`` classifies at meta-test: the matching network for the
    matching objective (it has no decision layer), else fine-tuning (None)."""
    return default_attention(cfg) if cfg.meta.algorithm == "matching" else None
