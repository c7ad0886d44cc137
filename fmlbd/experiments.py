"""Experiment runners: config -> data -> scenario -> federated training -> metrics -> tidy tables.

Trained global models are cached under ``<results_dir>/cache/`` keyed by everything
that determines them; an interrupted training resumes from its last checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .backdoor import AttackSets, BackdoorKey, make_attack_sets, poisoned_episode
from .config import ConfigError, ExperimentConfig, config_from_dict
from .data import ClassPool, load_mini_imagenet, load_omniglot, omniglot_evaluation_alphabets
from .episodes import sample_episode
from .federated import BenignClient, Federation, MaliciousClient
from .defense import Attention, MatchingNetworkDefense
from .meta import Params, finetune, get_params, predict, support_buffers, zero_head
from .metrics import (BACKDOOR_METRICS, accuracy, backdoor_batch, backdoor_episodes, backdoor_scores,
                      episode_accuracies, evaluation_episodes, finetuned_classifier, mean_ci95, score_backdoor_episode,
                      score_backdoor_predictions)
from .models import ConvNet
from .results import atomic_torch_save, key_of, load_table, save_table, write_json
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


def initial_params(cfg: ExperimentConfig, model: ConvNet) -> Params:
    """The model's initial weights (head zeroed when ``meta.zero_head``)."""
    params = get_params(model)
    return zero_head(params) if cfg.meta.zero_head else params


def episode_drawer(cfg: ExperimentConfig, scenario: Scenario, classes):
    """``draw(rng) -> Episode`` of meta-training episodes over ``classes``."""
    m = cfg.meta
    return lambda rng: sample_episode(scenario.pool, classes, m.ways, m.shots, m.queries, rng)


def benign_clients(cfg: ExperimentConfig, scenario: Scenario) -> list[BenignClient]:
    return [BenignClient(episode_drawer(cfg, scenario, classes), cfg.meta) for classes in scenario.client_classes]


def make_federation(cfg: ExperimentConfig, model, params: Params, clients) -> Federation:
    f = cfg.federation
    return Federation(model, params, clients, f.buffer_size, f.server_lr, f.delay_spread, cfg.seed)


def native_classifier(cfg: ExperimentConfig) -> Attention | None:
    """How a model trained under ``cfg`` classifies at meta-test: the matching network for the
    matching objective (it has no decision layer), else fine-tuning (None)."""
    return default_attention(cfg) if cfg.meta.algorithm == "matching" else None


def adapter(cfg: ExperimentConfig, model, params: Params, defense: Attention | None = None):
    """``adapt(episode) -> classify``: standard fine-tuning, or the local matching-network defense."""
    if defense is None:
        return lambda ep: finetuned_classifier(model, params, ep, cfg.eval.finetune_steps, cfg.eval.finetune_lr)
    return lambda ep: MatchingNetworkDefense(model, params, ep.support_x, ep.support_y, defense).predict


def main_episodes(cfg: ExperimentConfig, scenario: Scenario, shots: int | None = None,
                  episodes: int | None = None) -> list:
    """The fixed benign meta-test episodes of ``cfg.eval`` (``shots``/``episodes`` override it)."""
    e = cfg.eval
    return evaluation_episodes(scenario.pool, scenario.test_classes, e.ways, shots or e.shots, e.queries,
                               episodes or e.episodes, cfg.seed)


def backdoor_test_episodes(cfg: ExperimentConfig, scenario: Scenario, case: str, shots: int | None = None,
                           episodes: int | None = None) -> list:
    """The fixed meta-test episodes that hold the target class (see :func:`fmlbd.metrics.backdoor_episodes`)."""
    e = cfg.eval
    return backdoor_episodes(scenario.pool, scenario.test_classes, scenario.target_class, scenario.backdoor_classes,
                             case, e.ways, shots or e.shots, e.queries, episodes or e.episodes, cfg.seed,
                             cfg.attack.target_label)


_main_task_memo: dict[str, np.ndarray] = {}


def params_digest(params: Params) -> str:
    """A hash of the weights' values."""
    h = hashlib.sha1()
    for k in sorted(params):
        h.update(k.encode())
        h.update(params[k].detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def main_task_accuracies(cfg: ExperimentConfig, model, params: Params, scenario: Scenario, shots: int | None = None,
                         episodes: int | None = None, defense: Attention | None = None) -> np.ndarray:
    """Per-episode main-task accuracy on meta-test classes (see :mod:`fmlbd.metrics`).

    Remembered within the process for the same weights and episodes: cases (a) and (c) share
    their global models and meta-test classes, so their main task is evaluated once."""
    e = cfg.eval
    shots, episodes = shots or e.shots, episodes or e.episodes
    data = {k: v for k, v in cfg.to_dict()["data"].items() if k != "root"}
    memo = key_of({"params": params_digest(params), "data": data, "test": list(scenario.test_classes),
                   "eval": cfg.to_dict()["eval"], "shots": shots, "episodes": episodes, "seed": cfg.seed,
                   "defense": None if defense is None else [defense.kernel, defense.temperature, defense.k]})
    if memo not in _main_task_memo:
        eps = main_episodes(cfg, scenario, shots, episodes)
        _main_task_memo[memo] = episode_accuracies(adapter(cfg, model, params, defense), eps)
    return _main_task_memo[memo].copy()


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
    """Everything that determines the benign pre-trained model (not where the data lives, so
    the CLI and the notebooks, which reach ``data/`` by different paths, share the cache)."""
    d = cfg.to_dict()
    data = {k: v for k, v in d["data"].items() if k != "root"}
    return key_of({"data": data, "model": d["model"], "meta": d["meta"], "federation": d["federation"],
                   "eval": d["eval"], "seed": cfg.seed, "scenario": scenario.fingerprint()})


def pretrain(cfg: ExperimentConfig, case: str | None = None, progress: bool = True, position: int = 0) -> Trained:
    """Benign federated meta-training for ``cfg.federation.rounds`` rounds, cached and resumable.

    Every client (the adversary too) trains benignly on its own classes. The
    main-task accuracy (``eval.log_episodes`` episodes) is logged every
    ``eval.log_every`` rounds and at the end. A checkpoint is written every
    ``federation.checkpoint_every`` rounds; rerunning after an interruption resumes
    from it and gives the same result as an uninterrupted run.

    Training runs on one torch thread: floating-point sums depend on how they are split
    across threads, so this keeps a model independent of the machine's core count and of
    the command that trained it (the CLI and the notebooks share the cache).
    """
    scenario = build_scenario(cfg, case)
    model = build_model(cfg, scenario)
    path = Path(cfg.results_dir) / "cache" / f"pretrain-{pretrain_key(cfg, scenario)}"
    final, checkpoint = path / "final.pt", path / "checkpoint.pt"
    if final.is_file():
        saved = torch.load(final, weights_only=False)
        return Trained(model, scenario, saved["state"], pd.DataFrame(saved["log"]), path, 0.0)

    federation = make_federation(cfg, model, initial_params(cfg, model), benign_clients(cfg, scenario))
    rows: list[dict] = []
    elapsed = 0.0
    if checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=False)
        federation.load_state_dict(saved["state"])
        rows, elapsed = saved["log"], saved["elapsed"]
    write_json({"config": cfg.to_dict(), "scenario": scenario.fingerprint()}, path / "config.json")

    rounds = cfg.federation.rounds
    log_every, log_episodes = cfg.eval.log_every, cfg.eval.log_episodes
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    bar = tqdm(total=rounds, initial=federation.version, disable=not progress, unit="round", position=position,
               desc=f"pretrain [{cfg.profile}] case ({case or cfg.attack.case})")
    try:
        while federation.version < rounds:
            record = federation.step()
            bar.update(1)
            if record.round % log_every == 0 or record.round == rounds:
                acc = main_task_accuracies(cfg, model, federation.params, scenario, episodes=log_episodes,
                                           defense=native_classifier(cfg)).mean()
                rows.append({"round": record.round, "time_s": elapsed + time.perf_counter() - start,
                             "metric": "main_task_acc", "value": acc})
                bar.set_postfix(acc=f"{acc:.3f}")
            if record.round % cfg.federation.checkpoint_every == 0 or record.round == rounds:
                atomic_torch_save({"state": federation.state_dict(), "log": rows,
                                   "elapsed": elapsed + time.perf_counter() - start}, checkpoint)
    finally:
        bar.close()
        torch.set_num_threads(threads)
    spent = time.perf_counter() - start
    atomic_torch_save({"state": federation.state_dict(), "log": rows}, final)
    checkpoint.unlink(missing_ok=True)
    return Trained(model, scenario, federation.state_dict(), pd.DataFrame(rows), path, spent / 60)


def pretrain_cases(cfg: ExperimentConfig, cases, progress: bool = True, workers: int | None = None,
                   also: ExperimentConfig | None = None) -> None:
    """Make sure the pre-trained model of every case in ``cases`` is cached (for ``cfg`` and,
    if given, for ``also``), training the missing ones side by side in ``workers`` fresh Python
    processes (default: one per missing model, at most one per CPU core). :func:`pretrain`
    trains on one thread, so side by side is how a multi-core machine is used. A single
    missing model is left to :func:`pretrain` in this process.
    """
    missing = {}
    for c in (cfg,) if also is None else (cfg, also):
        for case in cases:
            path = Path(c.results_dir) / "cache" / f"pretrain-{pretrain_key(c, build_scenario(c, case))}"
            if not (path / "final.pt").is_file():
                missing.setdefault(path, (c, case))
    cores = os.cpu_count() or 1
    n = min(len(missing), workers or cores)
    if n <= 1:
        return
    if progress:
        names = ", ".join(f"({case}) {c.meta.algorithm}" for c, case in missing.values())
        tqdm.write(f"pre-training {names} in {n} parallel processes")
    pending = list(missing.values())
    while pending:
        batch, pending = pending[:n], pending[n:]
        procs = [subprocess.Popen([sys.executable, "-c", f"from fmlbd.experiments import _worker; _worker({i})"],
                                  stdin=subprocess.PIPE, text=True) for i in range(len(batch))]
        for proc, (c, case) in zip(procs, batch):
            proc.stdin.write(json.dumps({"config": c.to_dict(), "case": case, "progress": progress}))
            proc.stdin.close()
        failed = [case for proc, (c, case) in zip(procs, batch) if proc.wait() != 0]
        if failed:
            raise RuntimeError(f"pre-training of case(s) {failed} failed (see the error above); rerun to resume "
                               f"from the last checkpoint")


def _worker(position: int) -> None:
    """Entry point of a :func:`pretrain_cases` process: job as JSON on stdin."""
    job = json.loads(sys.stdin.read())
    pretrain(config_from_dict(job["config"]), job["case"], job["progress"], position)


def main_task_table(cfg: ExperimentConfig, trained: Trained, shots: tuple[int, ...] = (1, 5)) -> pd.DataFrame:
    """Tidy table of main-task accuracy (mean and 95% CI half-width) for each shot count, with
    the model's :func:`native_classifier`."""
    rows = []
    for k in shots:
        accs = main_task_accuracies(cfg, trained.model, trained.params, trained.scenario, shots=k,
                                    defense=native_classifier(cfg))
        mean, half = mean_ci95(accs)
        rows.append({"ways": cfg.eval.ways, "shots": k, "episodes": len(accs), "metric": "main_task_acc",
                     "value": mean, "ci95": half})
    return pd.DataFrame(rows)


# --- attack experiments ---------------------------------------------------------------------------

METRICS = ("main_task_acc",) + BACKDOOR_METRICS


def backdoor_key(cfg: ExperimentConfig) -> BackdoorKey:
    a = cfg.attack
    return BackdoorKey(a.key_pattern, a.key_row, a.key_col, a.key_size, a.key_gap, a.key_value)


def attack_sets(cfg: ExperimentConfig, scenario: Scenario, keyed: bool = True) -> AttackSets:
    """The attack training / validation sets (``keyed=False``: the same images without the key)."""
    return make_attack_sets(scenario.pool, scenario.backdoor_classes, backdoor_key(cfg) if keyed else None,
                            cfg.attack.attack_train_images)


def attack_metrics(cfg: ExperimentConfig, model, params: Params, scenario: Scenario, case: str,
                   episodes: int | None = None, defense: Attention | None = None,
                   keyed: bool = True) -> dict[str, float]:
    """The four metrics of PROTOCOL.md for ``params`` (means over ``episodes`` episodes each),
    with standard fine-tuning or, given ``defense``, the local matching-network classifier.
    ``keyed=False`` scores the attack images without the key: the rate at which they fall
    on the target class anyway (the chance control for backdoor accuracy)."""
    out = {"main_task_acc": float(main_task_accuracies(cfg, model, params, scenario, episodes=episodes,
                                                       defense=defense).mean())}
    eps = backdoor_test_episodes(cfg, scenario, case, episodes=episodes)
    scores = backdoor_scores(adapter(cfg, model, params, defense), eps, attack_sets(cfg, scenario, keyed),
                             scenario.target_class, case)
    return out | {m: float(v.mean()) for m, v in scores.items()}


@dataclass
class Attacked:
    """The federation right before and right after the round that aggregated the poisoned update."""

    trained: Trained
    before: Params        # global model before that round
    state: dict           # Federation.state_dict() right after it
    round: int            # the attack round (global version after aggregating the poisoned update)
    path: Path

    @property
    def after(self) -> Params:
        return self.state["params"]


def attack_clients(cfg: ExperimentConfig, scenario: Scenario, attack_version: int) -> list:
    """Benign clients with client 0 replaced by the one-shot adversary."""
    a, m = cfg.attack, cfg.meta
    clients = benign_clients(cfg, scenario)
    sets = attack_sets(cfg, scenario)
    own = list(scenario.client_classes[0])

    def draw(rng):
        return poisoned_episode(scenario.pool, own, scenario.target_class, m.ways, m.shots, m.queries,
                                a.poison_per_episode, sets, rng, a.target_label, a.poison_support)

    boost = a.boost if a.boost is not None else float(cfg.federation.buffer_size)
    clients[0] = MaliciousClient(clients[0], draw, m, a.attack_iterations, boost, attack_version, a.after_attack)
    return clients


def attack(cfg: ExperimentConfig, case: str | None = None, progress: bool = True) -> Attacked:
    """Pre-train (cached), then let the adversary attack once; cached like :func:`pretrain`.

    The adversary's next local training that starts from a global model of version
    >= ``federation.rounds`` is poisoned and boosted. Cases (a) and (c) share it.
    """
    case = case or cfg.attack.case
    trained = pretrain(cfg, case, progress)
    d = cfg.to_dict()
    key = key_of({"pretrain": trained.path.name, "attack": {k: v for k, v in d["attack"].items()
                                                             if k not in ("case", "draws") and not k.startswith(("dampening",
                                                             "curve", "finetune"))}})
    path = Path(cfg.results_dir) / "cache" / f"attack-{key}"
    if (path / "attacked.pt").is_file():
        saved = torch.load(path / "attacked.pt", weights_only=False)
        return Attacked(trained, saved["before"], saved["state"], saved["round"], path)
    federation = make_federation(cfg, trained.model, trained.params,
                                 attack_clients(cfg, trained.scenario, cfg.federation.rounds))
    federation.load_state_dict(trained.state)
    if cfg.attack.draw:
        federation.client_rngs[0] = np.random.default_rng([cfg.seed, 7, cfg.attack.draw])
    while True:
        before = {k: v.clone() for k, v in federation.params.items()}
        record = federation.step()
        if record.poisoned:
            break
    attacked = Attacked(trained, before, federation.state_dict(), record.round, path)
    atomic_torch_save({"before": before, "state": attacked.state, "round": record.round}, path / "attacked.pt")
    write_json({"config": d, "attack_round": record.round, "clients": record.clients,
                "staleness": record.staleness}, path / "config.json")
    return attacked


def chance_control(cfg: ExperimentConfig, cases=("a", "b", "c"), progress: bool = True,
                   defense: Attention | None = None) -> pd.DataFrame:
    """Backdoor accuracy of the pre-attack global model on the attack images with and
    without the key (classified by fine-tuning, or by ``defense``).
    Tidy rows: case, images ("keyed"/"clean"), metric, value."""
    rows = []
    pretrain_cases(cfg, cases, progress)
    for case in cases:
        att = attack(cfg, case, progress)
        for images in ("keyed", "clean"):
            m = attack_metrics(cfg, att.trained.model, att.before, att.trained.scenario, case, defense=defense,
                               keyed=images == "keyed")
            rows += [{"case": case, "images": images, "metric": k, "value": m[k]}
                     for k in ("backdoor_train_acc", "backdoor_val_acc")]
    return pd.DataFrame(rows)


def cached_table(cfg: ExperimentConfig, name: str, key: dict, compute) -> pd.DataFrame:
    """Load table ``name`` saved for ``key``, or compute and save it (with config and seed)."""
    path = Path(cfg.results_dir) / "cache" / "tables" / f"{name}-{key_of(key)}.csv"
    if path.is_file():
        return load_table(path)[0]
    table = compute()
    save_table(table, path, cfg.to_dict(), key=key)
    return table


def _rows(case: str, x_name: str, x, metrics: dict[str, float]) -> list[dict]:
    return [{"case": case, x_name: x, "metric": m, "value": metrics[m]} for m in METRICS]


def one_shot_attack(cfg: ExperimentConfig, cases=("a", "b", "c"), progress: bool = True,
                    defense: Attention | None = None, phases=("before", "after")) -> pd.DataFrame:
    """Experiment 1: the four metrics right before and right after the attack round (with
    ``defense``: evaluated with the local matching-network classifier instead of fine-tuning).

    Tidy rows: case, phase ("before"/"after", those in ``phases``), attack_round, metric, value.
    """
    rows = []
    pretrain_cases(cfg, cases, progress)
    for case in cases:
        att = attack(cfg, case, progress)

        def compute():
            out = []
            for phase, params in ((p, att.before if p == "before" else att.after) for p in phases):
                metrics = attack_metrics(cfg, att.trained.model, params, att.trained.scenario, case, defense=defense)
                out += [r | {"attack_round": att.round} for r in _rows(case, "phase", phase, metrics)]
            return pd.DataFrame(out)

        key = {"attack": att.path.name, "case": case, "eval": cfg.to_dict()["eval"]}
        if defense is not None:
            key["defense"] = [defense.kernel, defense.temperature, defense.k]
        if tuple(phases) != ("before", "after"):
            key["phases"] = list(phases)
        rows.append(cached_table(cfg, "one-shot", key, compute))
    return pd.concat(rows, ignore_index=True)


def attack_draws(cfg: ExperimentConfig, cases=("a", "b"), progress: bool = True,
                 defense: Attention | None = None) -> pd.DataFrame:
    """The four metrics right after the attack for ``attack.draws`` random draws of the
    adversary (``attack.draw`` = 0, 1, ...): same pre-trained model, same other clients, a
    different poisoned training. One draw is one sample of the attack's outcome; this shows
    its spread. Tidy rows: case, draw, metric, value."""
    tables = []
    for draw in range(cfg.attack.draws):
        c = replace(cfg, attack=replace(cfg.attack, draw=draw))
        table = one_shot_attack(c, cases, progress, defense, phases=("after",))
        tables.append(table.drop(columns=["phase"]).assign(draw=draw))
    return pd.concat(tables, ignore_index=True)[["case", "draw", "attack_round", "metric", "value"]]


def dampening_snapshots(cfg: ExperimentConfig, case: str, progress: bool = True) -> dict[int, Params]:
    """Global models at rounds 0, ``curve_every``, ... ``dampening_rounds`` after the attack
    (round 0 = right after it), from benign federated training; cached."""
    a = cfg.attack
    att = attack(cfg, case, progress)
    path = att.path / f"dampening-{key_of([a.dampening_rounds, a.curve_every, a.after_attack])}.pt"
    if path.is_file():
        return torch.load(path, weights_only=False)
    federation = make_federation(cfg, att.trained.model, att.after, attack_clients(cfg, att.trained.scenario, 0))
    federation.load_state_dict(att.state)
    snapshots = {0: att.after}
    for r in tqdm(range(1, a.dampening_rounds + 1), desc=f"dampening case ({case})", disable=not progress):
        federation.step()
        if r % a.curve_every == 0 or r == a.dampening_rounds:
            snapshots[r] = {k: v.clone() for k, v in federation.params.items()}
    atomic_torch_save(snapshots, path)
    return snapshots


def dampening(cfg: ExperimentConfig, cases=("a", "b", "c"), progress: bool = True,
              defense: Attention | None = None) -> pd.DataFrame:
    """Experiment 2: the four metrics after each ``attack.curve_every`` rounds of benign
    federated training following the attack, for ``attack.dampening_rounds`` rounds
    (``attack.curve_episodes`` episodes per point); with ``defense``, evaluated with the
    local matching-network classifier instead of fine-tuning.

    Tidy rows: case, round (rounds since the attack round; 0 = right after it), metric, value.
    """
    a = cfg.attack
    tables = []
    pretrain_cases(cfg, cases, progress)
    for case in cases:
        att = attack(cfg, case, progress)

        def compute():
            snapshots = dampening_snapshots(cfg, case, progress)
            out = []
            for r, params in snapshots.items():
                out += _rows(case, "round", r, attack_metrics(cfg, att.trained.model, params, att.trained.scenario,
                                                              case, a.curve_episodes, defense))
            return pd.DataFrame(out)

        key = {"attack": att.path.name, "case": case, "eval": cfg.to_dict()["eval"],
               "curve": [a.dampening_rounds, a.curve_every, a.curve_episodes, a.after_attack]}
        if defense is not None:
            key["defense"] = [defense.kernel, defense.temperature, defense.k]
        tables.append(cached_table(cfg, "dampening", key, compute))
    return pd.concat(tables, ignore_index=True)


def finetune_steps_scored(cfg: ExperimentConfig) -> list[int]:
    """Steps after which the fine-tuning experiment scores the model: 0 (before), each of the
    first 10, then every ``attack.finetune_eval_every``-th, and the last."""
    a = cfg.attack
    if a.finetune_eval_every < 1:
        raise ValueError(f"attack.finetune_eval_every must be >= 1 (1 scores every step), not {a.finetune_eval_every}")
    last = a.finetune_max_steps
    return sorted({*range(min(10, last) + 1), *range(0, last + 1, a.finetune_eval_every), last})


def finetune_failure(cfg: ExperimentConfig, cases=("a", "b", "c"), progress: bool = True) -> pd.DataFrame:
    """Experiment 3: the poisoned global model (right after the attack), fine-tuned on one
    episode for ``attack.finetune_max_steps`` steps; the metrics after the steps of
    :func:`finetune_steps_scored`, averaged over ``attack.finetune_trials`` episodes.
    Main-task accuracy follows a benign meta-test episode fine-tuned the same way (shared by
    cases that share the attacked model).

    Tidy rows: case, step (0 = before fine-tuning), metric, value.
    """
    a, e = cfg.attack, cfg.eval
    steps = finetune_steps_scored(cfg)
    row = {step: i for i, step in enumerate(steps)}
    key = {"eval": cfg.to_dict()["eval"], "finetune": [a.finetune_max_steps, a.finetune_trials, steps]}

    def curve(model, params, episodes, score, columns, desc):
        """One row per scored step: the means over ``episodes`` of ``score(episode, params)`` (one
        value per column), with a ``step`` column."""
        sums = np.zeros((len(steps), len(columns)))
        for ep in tqdm(episodes, desc=desc, disable=not progress):
            def on_step(step, p, ep=ep):
                if step in row:
                    sums[row[step]] += score(ep, p)

            on_step(0, params)
            finetune(model, params, ep.support_x, ep.support_y, a.finetune_max_steps, e.finetune_lr, on_step=on_step)
        return pd.DataFrame(sums / len(episodes), columns=columns).assign(step=steps)

    tables = []
    pretrain_cases(cfg, cases, progress)
    for case in cases:
        att = attack(cfg, case, progress)
        model, scenario = att.trained.model, att.trained.scenario

        def main_curve():
            eps = main_episodes(cfg, scenario, episodes=a.finetune_trials)
            return curve(model, att.after, eps, lambda ep, p: accuracy(
                predict(model, p, support_buffers(model, p, ep.support_x), ep.query_x), ep.query_y),
                ["main_task_acc"], "fine-tuning, main task")

        def backdoor_curve():
            sets = attack_sets(cfg, scenario)
            eps = backdoor_test_episodes(cfg, scenario, case, episodes=a.finetune_trials)

            def score(ep, p):
                buffers = support_buffers(model, p, ep.support_x)
                s = score_backdoor_episode(lambda x: predict(model, p, buffers, x), ep, sets, scenario.target_class,
                                           case)
                return [s[m] for m in BACKDOOR_METRICS]

            return curve(model, att.after, eps, score, list(BACKDOOR_METRICS), f"fine-tuning case ({case})")

        main = cached_table(cfg, "finetune-main", key | {"attack": att.path.name}, main_curve)
        backdoor = cached_table(cfg, "finetune-backdoor", key | {"attack": att.path.name, "case": case},
                                backdoor_curve)
        wide = main.merge(backdoor, on="step")
        tables.append(wide.melt(id_vars="step", value_vars=list(METRICS), var_name="metric").assign(case=case)
                      [["case", "step", "metric", "value"]])
    return pd.concat(tables, ignore_index=True)


# --- defense experiments --------------------------------------------------------------------------

def default_attention(cfg: ExperimentConfig) -> Attention:
    d = cfg.defense
    return Attention(d.kernel, d.temperature, d.k)


SHARED_MODELS = ("features", "head")

#: what the defense should achieve right after the attack in cases (a) and (b): backdoor accuracy
#: at most BACKDOOR_CEILING, main task at most MAIN_TASK_SLACK below the undefended pre-attack model's
BACKDOOR_CEILING, MAIN_TASK_SLACK = 0.30, 0.05


def main_task_floor(comparison: pd.DataFrame) -> dict[str, float]:
    """Per case, the undefended ("fine-tuning") model's main-task accuracy right before the attack
    minus ``MAIN_TASK_SLACK`` (``comparison``: a :func:`defense_comparison` table)."""
    pre = comparison[(comparison["phase"] == "before") & (comparison["method"] == "fine-tuning")
                     & (comparison["metric"] == "main_task_acc")].set_index("case")["value"]
    return (pre - MAIN_TASK_SLACK).to_dict()


def defended_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """The config of the federation that the defense runs on (``defense.shared_model``).

    "features": the same federation, attack and seed, but every client, the adversary included,
    trains with the matching-network objective (``meta.algorithm="matching"``,
    ``defense.train_inner_steps`` SGD steps per episode of ``defense.train_shots`` shots): the
    shared model has no decision layer, so neither has the poisoned update. "head": ``cfg``
    itself (the undefended, head-trained federation).
    """
    d = cfg.defense
    if d.shared_model == "head":
        return cfg
    if d.shared_model == "features":
        return replace(cfg, meta=replace(cfg.meta, algorithm="matching", inner_steps=d.train_inner_steps,
                                         shots=d.train_shots))
    raise ConfigError(f"unknown defense.shared_model {d.shared_model!r}; choose one of {SHARED_MODELS}")


def defense_comparison(cfg: ExperimentConfig, cases=("a", "b", "c"), progress: bool = True,
                       attention: Attention | None = None) -> pd.DataFrame:
    """The four metrics right before and after the attack, for three ways of classifying:

    - "fine-tuning": the undefended federation (shared head), standard meta-test fine-tuning;
    - "matching, shared head": the local matching network on that same head-trained model
      (its decision layer ignored at meta-test only);
    - "matching, shared features": the defense, the local matching network on the model of a
      federation that shares features only (:func:`defended_config`).

    With ``defense.shared_model="head"`` the last two coincide and only the first two are run.
    Tidy rows: case, phase, method, metric, value.
    """
    attention = attention or default_attention(cfg)
    defended = defended_config(cfg)
    pretrain_cases(cfg, cases, progress, also=defended)
    tables = [one_shot_attack(cfg, cases, progress).assign(method="fine-tuning"),
              one_shot_attack(cfg, cases, progress, attention).assign(method="matching, shared head")]
    if defended != cfg:
        tables.append(one_shot_attack(defended, cases, progress, attention).assign(method="matching, shared features"))
    return pd.concat(tables, ignore_index=True)


def defense_draws(cfg: ExperimentConfig, cases=("a", "b"), progress: bool = True) -> pd.DataFrame:
    """:func:`attack_draws` of the defended federation (:func:`defended_config`, classified by the
    local matching network) for the protocol's attack ("keyed images") and for a control that
    differs only in carrying no keyed images (``attack.poison_per_episode=0``: the same boosted
    update of ``attack.attack_iterations`` steps, target class in every episode). The control
    separates what the update's size does to the shared features from what the poison does.
    Tidy rows: case, draw, attack_round, metric, value, update."""
    defended, attention = defended_config(cfg), default_attention(cfg)
    control = replace(defended, attack=replace(defended.attack, poison_per_episode=0))
    return pd.concat([attack_draws(defended, cases, progress, attention).assign(update="keyed images"),
                      attack_draws(control, cases, progress, attention).assign(update="no keyed images (control)")],
                     ignore_index=True)


def adaptive_attack(cfg: ExperimentConfig, cases=("a", "b"), progress: bool = True) -> pd.DataFrame:
    """The defense against an adversary who knows it: the defended federation's four metrics
    right after an attack that puts keyed images only among its queries
    (``attack.poison_support=False``), so its training matches them to *clean* target images,
    as a user's support set will. Tidy rows as :func:`one_shot_attack` (phase "after")."""
    adaptive = defended_config(replace(cfg, attack=replace(cfg.attack, poison_support=False)))
    return one_shot_attack(adaptive, cases, progress, default_attention(cfg), phases=("after",))


def defense_over_rounds(cfg: ExperimentConfig, cases=("a", "b", "c"), progress: bool = True) -> pd.DataFrame:
    """:func:`dampening` of the defended federation, evaluated with the local matching network."""
    return dampening(defended_config(cfg), cases, progress, defense=default_attention(cfg))


def attention_ablation(cfg: ExperimentConfig, cases=("a", "b"), progress: bool = True) -> pd.DataFrame:
    """The four metrics of the defended federation's model (:func:`defended_config`) right
    after the attack under every kernel x temperature of ``cfg.defense``, on the episodes of
    :func:`attack_metrics` with each of ``defense.ablation_shots`` support images per class
    (with one, every kernel picks the most similar support image). Each episode's features
    are computed once and every kernel reads them.
    Tidy rows: shots, kernel, temperature, case, metric, value."""
    d, e = cfg.defense, cfg.eval
    cfg = defended_config(cfg)
    grid = [Attention(k, t, d.k) for k in d.ablation_kernels for t in d.ablation_temperatures]
    tables = []
    pretrain_cases(cfg, cases, progress)
    for case in cases:
        att = attack(cfg, case, progress)
        model, scenario, params = att.trained.model, att.trained.scenario, att.after
        for shots in d.ablation_shots:
            def compute():
                sets = attack_sets(cfg, scenario)
                main_eps = main_episodes(cfg, scenario, shots)
                bd_eps = backdoor_test_episodes(cfg, scenario, case, shots)
                sums = np.zeros((len(grid), len(METRICS)))
                desc = f"ablation case ({case}), {shots}-shot"
                for ep in tqdm(main_eps, desc=f"{desc}, main task", disable=not progress):
                    defense = MatchingNetworkDefense(model, params, ep.support_x, ep.support_y)
                    sums[:, 0] += [accuracy(pred, ep.query_y) for pred in defense.predict_each(ep.query_x, grid)]
                for ep in tqdm(bd_eps, desc=f"{desc}, backdoor", disable=not progress):
                    defense = MatchingNetworkDefense(model, params, ep.support_x, ep.support_y)
                    images, sizes = backdoor_batch(ep, sets, case)
                    for i, pred in enumerate(defense.predict_each(images, grid)):
                        s = score_backdoor_predictions(pred, sizes, ep, scenario.target_class)
                        sums[i, 1:] += [s[m] for m in BACKDOOR_METRICS]
                means = sums / e.episodes
                return pd.DataFrame([{"shots": shots, "kernel": a.kernel, "temperature": a.temperature, "case": case,
                                      "metric": m, "value": means[i, j]}
                                     for i, a in enumerate(grid) for j, m in enumerate(METRICS)])

            key = {"attack": att.path.name, "case": case, "shots": shots, "eval": cfg.to_dict()["eval"],
                   "grid": [[a.kernel, a.temperature, a.k] for a in grid]}
            tables.append(cached_table(cfg, "ablation", key, compute))
    return pd.concat(tables, ignore_index=True)


def inference_cost(cfg: ExperimentConfig, case: str = "a", progress: bool = True) -> pd.DataFrame:
    """Wall time to adapt to and classify one query episode (support + N*Q queries) with
    fine-tuning (``eval.finetune_steps`` steps, undefended model) and with the matching-network
    defense (defended model). Tidy rows: method, episodes, seconds_per_episode."""
    rows = []
    for method, c, defense in (("fine-tuning", cfg, None),
                               ("matching network", defended_config(cfg), default_attention(cfg))):
        att = attack(c, case, progress)
        eps = main_episodes(c, att.trained.scenario, episodes=c.defense.cost_episodes)
        adapt = adapter(c, att.trained.model, att.after, defense)
        start = time.perf_counter()
        for ep in eps:
            adapt(ep)(ep.query_x)
        rows.append({"method": method, "episodes": len(eps),
                     "seconds_per_episode": (time.perf_counter() - start) / len(eps)})
    return pd.DataFrame(rows)
