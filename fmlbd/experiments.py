"""Experiment runners: config -> data -> scenario -> federated training -> metrics -> tidy tables.

Trained global models are cached under ``<results_dir>/cache/`` keyed by everything
that determines them; an interrupted training resumes from its last checkpoint.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .config import ExperimentConfig
from .data import ClassPool, load_mini_imagenet, load_omniglot, omniglot_evaluation_alphabets
from .episodes import sample_episode
from .federated import BenignClient, Federation
from .meta import Params, get_params
from .metrics import episode_accuracies, evaluation_episodes, mean_ci95
from .models import ConvNet
from .results import atomic_torch_save, key_of, write_json
from .splits import Scenario, make_scenario


def load_pool(cfg: ExperimentConfig) -> tuple[ClassPool, tuple[str, ...]]:
    """The unrotated dataset of ``cfg.data`` and its meta-test groups."""
    d = cfg.data
    if d.dataset == "omniglot":
        pool = load_omniglot(d.root, d.source, d.image_size)
        test_groups = d.test_alphabets or omniglot_evaluation_alphabets(d.root)
        return pool, tuple(test_groups)
    if d.dataset == "mini-imagenet":
        return load_mini_imagenet(d.root, d.image_size), ("test",)
    raise ValueError(f"unknown dataset {d.dataset!r}; use 'omniglot' or 'mini-imagenet'")


def build_scenario(cfg: ExperimentConfig, case: str | None = None) -> Scenario:
    """Class ownership for ``cfg`` (``case`` overrides ``cfg.attack.case``)."""
    pool, test_groups = load_pool(cfg)
    rotations = cfg.data.rotations if cfg.data.dataset == "omniglot" else 1
    return make_scenario(pool, test_groups, cfg.federation.clients, rotations, case or cfg.attack.case,
                         cfg.attack.backdoor_classes, cfg.seed)


def build_model(cfg: ExperimentConfig, scenario: Scenario) -> ConvNet:
    """A freshly initialised network (seeded by ``cfg.seed``) sized for the data and ways."""
    if cfg.eval.ways > cfg.meta.ways:
        raise ValueError(f"eval.ways={cfg.eval.ways} exceeds meta.ways={cfg.meta.ways}: the head has meta.ways outputs")
    images = scenario.pool.images
    torch.manual_seed(cfg.seed)
    return ConvNet(images.shape[2], cfg.model.filters, cfg.meta.ways, images.shape[-1])


def episode_drawer(cfg: ExperimentConfig, scenario: Scenario, classes):
    """``draw(rng) -> Episode`` of meta-training episodes over ``classes``."""
    m = cfg.meta
    return lambda rng: sample_episode(scenario.pool, classes, m.ways, m.shots, m.queries, rng)


def benign_clients(cfg: ExperimentConfig, scenario: Scenario) -> list[BenignClient]:
    return [BenignClient(episode_drawer(cfg, scenario, classes), cfg.meta) for classes in scenario.client_classes]


def make_federation(cfg: ExperimentConfig, model, params: Params, clients) -> Federation:
    f = cfg.federation
    return Federation(model, params, clients, f.buffer_size, f.server_lr, f.delay_spread, cfg.seed)


def main_task_accuracies(cfg: ExperimentConfig, model, params: Params, scenario: Scenario, shots: int | None = None,
                         episodes: int | None = None) -> np.ndarray:
    """Per-episode main-task accuracy on meta-test classes (see :mod:`fmlbd.metrics`)."""
    e = cfg.eval
    eps = evaluation_episodes(scenario.pool, scenario.test_classes, e.ways, shots or e.shots, e.queries,
                              episodes or e.episodes, cfg.seed)
    return episode_accuracies(model, params, eps, e.finetune_steps, e.finetune_lr)


@dataclass
class Trained:
    """A federated training run: the model, its final federation state and its per-round log."""

    model: ConvNet
    scenario: Scenario
    state: dict           # Federation.state_dict() after the last round
    log: pd.DataFrame     # tidy: round, time_s, metric, value
    path: Path            # cache folder
    minutes: float        # wall time spent training in this process (0 when fully cached)

    @property
    def params(self) -> Params:
        return self.state["params"]


def pretrain_key(cfg: ExperimentConfig, scenario: Scenario) -> str:
    """Everything that determines the benign pre-trained model."""
    d = cfg.to_dict()
    return key_of({"data": d["data"], "model": d["model"], "meta": d["meta"], "federation": d["federation"],
                   "eval": d["eval"], "seed": cfg.seed, "scenario": scenario.fingerprint()})


def pretrain(cfg: ExperimentConfig, case: str | None = None, progress: bool = True) -> Trained:
    """Benign federated meta-training for ``cfg.federation.rounds`` rounds, cached and resumable.

    Every client (the adversary too) trains benignly on its own classes. The
    main-task accuracy (``eval.log_episodes`` episodes) is logged every
    ``eval.log_every`` rounds and at the end. A checkpoint is written every
    ``federation.checkpoint_every`` rounds; rerunning after an interruption resumes
    from it and gives the same result as an uninterrupted run.
    """
    scenario = build_scenario(cfg, case)
    model = build_model(cfg, scenario)
    path = Path(cfg.results_dir) / "cache" / f"pretrain-{pretrain_key(cfg, scenario)}"
    final, checkpoint = path / "final.pt", path / "checkpoint.pt"
    if final.is_file():
        saved = torch.load(final, weights_only=False)
        return Trained(model, scenario, saved["state"], pd.DataFrame(saved["log"]), path, 0.0)

    federation = make_federation(cfg, model, get_params(model), benign_clients(cfg, scenario))
    rows: list[dict] = []
    elapsed = 0.0
    if checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=False)
        federation.load_state_dict(saved["state"])
        rows, elapsed = saved["log"], saved["elapsed"]
    write_json({"config": cfg.to_dict(), "scenario": scenario.fingerprint()}, path / "config.json")

    rounds = cfg.federation.rounds
    log_every, log_episodes = cfg.eval.log_every, cfg.eval.log_episodes
    start = time.perf_counter()
    bar = tqdm(total=rounds, initial=federation.version, desc=f"pretrain [{cfg.profile}]", disable=not progress,
               unit="round")
    while federation.version < rounds:
        record = federation.step()
        bar.update(1)
        if record.round % log_every == 0 or record.round == rounds:
            acc = main_task_accuracies(cfg, model, federation.params, scenario, episodes=log_episodes).mean()
            rows.append({"round": record.round, "time_s": elapsed + time.perf_counter() - start,
                         "metric": "main_task_acc", "value": acc})
            bar.set_postfix(acc=f"{acc:.3f}")
        if record.round % cfg.federation.checkpoint_every == 0 or record.round == rounds:
            atomic_torch_save({"state": federation.state_dict(), "log": rows,
                               "elapsed": elapsed + time.perf_counter() - start}, checkpoint)
    bar.close()
    spent = time.perf_counter() - start
    atomic_torch_save({"state": federation.state_dict(), "log": rows}, final)
    checkpoint.unlink(missing_ok=True)
    return Trained(model, scenario, federation.state_dict(), pd.DataFrame(rows), path, spent / 60)


def main_task_table(cfg: ExperimentConfig, trained: Trained, shots: tuple[int, ...] = (1, 5)) -> pd.DataFrame:
    """Tidy table of main-task accuracy (mean and 95% CI half-width) for each shot count."""
    rows = []
    for k in shots:
        accs = main_task_accuracies(cfg, trained.model, trained.params, trained.scenario, shots=k)
        mean, half = mean_ci95(accs)
        rows.append({"ways": cfg.eval.ways, "shots": k, "episodes": len(accs), "metric": "main_task_acc",
                     "value": mean, "ci95": half})
    return pd.DataFrame(rows)
