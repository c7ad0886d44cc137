"""The cached pipeline: pre-training -> the one-shot attack -> benign rounds after it.

Each stage is keyed by whole config sections (:func:`fmlbd.cache.cache_key`) and the key of the
stage it starts from, and saved under ``<results_dir>/cache/``:

- ``pretrain-<key>-<code>/``: benign federated meta-training (``<key>``: the ``data``, ``model``,
  ``meta``, ``federation``, ``eval`` sections, seed, class assignment; ``<code>``: the
  :func:`~fmlbd.codebase.code_version` of this module, so a change to the code it runs trains anew);
  checkpointed and resumable.
- ``attack-<key>/``: the federation right before and after the round(s) that aggregated the
  poisoned update(s) (the pre-trained model's key and the ``attack`` section). Cases (a) and (c)
  share it: they differ only in evaluation.
- ``attack-<key>/dampening-<key>.pt``: global models over the benign rounds after the attack
  (``measure`` section).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd
from tqdm import tqdm

from .builders import attack_clients, benign_clients, build_model, build_scenario, initial_params, make_federation, \
    native_attention
from .cache import cache_dir, cache_key
from .codebase import code_version
from .config import ConfigError, ExperimentConfig
from .errors import CacheError
from .evaluation import main_task_accuracies
from .federated import Federation, RoundRecord
from .functional import Params, all_finite
from .models import ConvNet
from .results import atomic_torch_save, cache_contents, load_torch, write_json
from .shipped import check_shipped, model_key, shipped_model
from .splits import Scenario
from .streams import stream


class TrainingDiverged(ConfigError):
    """Training produced non-finite weights (a learning rate too large); nothing was cached."""


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


def pretrain_path(cfg: ExperimentConfig, scenario: Scenario) -> Path:
    """Cache folder of the benign pre-trained model: its :func:`model_key` and the code version."""
    return cache_dir(cfg) / f"pretrain-{model_key(cfg, scenario)}-{code_version(__name__)}"


def is_pretrained(cfg: ExperimentConfig, scenario: Scenario) -> bool:
    """True when :func:`pretrain` would load the model of ``cfg`` and ``scenario`` instead of training it."""
    return (pretrain_path(cfg, scenario) / "final.pt").is_file() or shipped_model(cfg, scenario) is not None


def _finite(saved: dict, path: Path) -> dict:
    """A loaded model file whose weights are all finite (a cache that holds NaN is refused, never used)."""
    if not all_finite(saved["state"]["params"]):
        raise CacheError(f"{path} holds non-finite weights: delete it and rerun (it is recomputed)")
    return saved


def _check_finite(cfg: ExperimentConfig, params: Params, round_: int, stage: str = "training") -> None:
    """Refuse non-finite weights before anything is cached (``stage``: "training" or "the attack")."""
    if not all_finite(params):
        blame = (f"attack.boost={cfg.attack.boost}, attack.attack_iterations={cfg.attack.attack_iterations}, "
                 if stage == "the attack" else "")
        raise TrainingDiverged(
            f"{stage} diverged: the global model has non-finite weights at round {round_} ({blame}meta.inner_lr="
            f"{cfg.meta.inner_lr}, meta.meta_lr={cfg.meta.meta_lr}, federation.server_lr={cfg.federation.server_lr}); "
            f"lower {'the boost or ' if blame else ''}a learning rate and rerun (nothing was cached)")


def benign_rounds(cfg: ExperimentConfig, federation: Federation, model: ConvNet,
                  scenario: Scenario) -> Iterator[tuple[RoundRecord, float | None]]:
    """The training loop, nothing cached: step ``federation`` until its version is
    ``federation.rounds``, yielding after each round its record and the main-task accuracy
    (``eval.log_episodes`` episodes) every ``eval.log_every`` rounds and at the last (None between).
    Non-finite weights at a log point raise :class:`TrainingDiverged`."""
    rounds, log_every = cfg.federation.rounds, cfg.eval.log_every
    while federation.version < rounds:
        record = federation.step()
        acc = None
        if record.round % log_every == 0 or record.round == rounds:
            _check_finite(cfg, federation.params, record.round)
            acc = float(main_task_accuracies(cfg, model, federation.params, scenario, episodes=cfg.eval.log_episodes,
                                             attention=native_attention(cfg)).mean())
        yield record, acc


def pretrain(cfg: ExperimentConfig, case: str | None = None, progress: bool = True, position: int = 0,
             on_log: Callable[[int, float, Params], None] | None = None,
             on_round: Callable[[int], None] | None = None) -> Trained:
    """Benign federated meta-training for ``cfg.federation.rounds`` rounds (:func:`benign_rounds`),
    cached and resumable.

    Every client (the adversary too) trains benignly on its own classes. The
    main-task accuracy of :func:`benign_rounds` is logged. A checkpoint is written every
    ``federation.checkpoint_every`` rounds; rerunning after an interruption resumes
    from it and gives the same result as an uninterrupted run. ``on_log(round, seconds, params)``
    is called at each log point (seconds: training time so far, logging included), ``on_round(round)``
    after each round trained.

    Training runs on one torch thread: floating-point sums depend on how they are split
    across threads, so this keeps a model independent of the machine's core count and of
    the command that trained it (the CLI and the notebooks share the cache). A model shipped
    with fmlbd (:mod:`fmlbd.shipped`) under the same key is used unless ``cfg.shipped_models`` is false.
    """
    scenario = build_scenario(cfg, case)
    model = build_model(cfg, scenario)
    path = pretrain_path(cfg, scenario)
    final, checkpoint = path / "final.pt", path / "checkpoint.pt"
    source = final if final.is_file() else shipped_model(cfg, scenario)
    if source is not None:
        if source != final:
            check_shipped(source)
        with cache_contents(source):
            saved = _finite(load_torch(source), source)
            return Trained(model, scenario, saved["state"], pd.DataFrame(saved["log"]), path, 0.0)

    federation = make_federation(cfg, model, initial_params(cfg, model), benign_clients(cfg, scenario))
    rows: list[dict] = []
    elapsed = 0.0
    if checkpoint.is_file():
        with cache_contents(checkpoint):
            saved = load_torch(checkpoint)
            federation.load_state_dict(saved["state"])
            rows, elapsed = saved["log"], saved["elapsed"]
    write_json({"config": cfg.to_dict(), "scenario": scenario.fingerprint()}, path / "config.json")

    start = time.perf_counter()
    bar = tqdm(total=cfg.federation.rounds, initial=federation.version, disable=not progress, unit="round",
               position=position, desc=f"pretrain [{cfg.profile}] case ({case or cfg.case})")
    try:
        for record, acc in benign_rounds(cfg, federation, model, scenario):
            bar.update(1)
            if on_round is not None:
                on_round(record.round)
            if acc is not None:
                rows.append({"round": record.round, "time_s": elapsed + time.perf_counter() - start,
                             "metric": "main_task_acc", "value": acc})
                if on_log is not None:
                    on_log(record.round, rows[-1]["time_s"], federation.params)
                bar.set_postfix(acc=f"{acc:.3f}")
            if record.round % cfg.federation.checkpoint_every == 0 or record.round == cfg.federation.rounds:
                _check_finite(cfg, federation.params, record.round)
                atomic_torch_save({"state": federation.state_dict(), "log": rows,
                                   "elapsed": elapsed + time.perf_counter() - start}, checkpoint)
    finally:
        bar.close()
        federation.close()
    spent = time.perf_counter() - start
    atomic_torch_save({"state": federation.state_dict(), "log": rows}, final)
    checkpoint.unlink(missing_ok=True)
    return Trained(model, scenario, federation.state_dict(), pd.DataFrame(rows), path, spent / 60)


@dataclass
class Attacked:
    """The federation right before the first and right after the last round that aggregated a
    poisoned update (one round for the protocol's one-shot attack)."""

    trained: Trained
    before: Params        # global model before the first poisoned round
    state: dict           # Federation.state_dict() right after the last one
    round: int            # the (last) attack round: global version after aggregating the poisoned update
    path: Path
    first_round: int      # the first poisoned round (= round for a one-shot attack)

    @property
    def after(self) -> Params:
        return self.state["params"]


def attack_path(cfg: ExperimentConfig, case: str | None = None) -> Path:
    """Cache folder of the attack on the pre-trained model of ``case`` (keyed by its folder and ``attack``)."""
    pretrained = pretrain_path(cfg, build_scenario(cfg, case))
    return cache_dir(cfg) / f"attack-{cache_key(cfg, 'attack', pretrain=pretrained.name)}"


def attack_federation(cfg: ExperimentConfig, trained: Trained, clients: list | None = None) -> Federation:
    """The federation the attack runs in: ``trained``'s final state, its clients those of
    :func:`~fmlbd.builders.attack_clients` (or ``clients``), the adversary in its draw ``attack.draw``."""
    clients = attack_clients(cfg, trained.scenario, cfg.federation.rounds) if clients is None else clients
    federation = make_federation(cfg, trained.model, trained.params, clients)
    federation.load_state_dict(trained.state)
    if cfg.attack.draw:
        federation.reseed_client(0, stream("adversary_draw", cfg.seed, cfg.attack.draw))
    return federation


def attack(cfg: ExperimentConfig, case: str | None = None, progress: bool = True) -> Attacked:
    """Pre-train (cached), then let the adversary attack; cached like :func:`pretrain`.

    The adversary's next ``attack.poison_rounds`` local trainings that start from a global model of
    version >= ``federation.rounds`` are poisoned (boosted, shaped as ``cfg.attack`` says); the result
    is the federation right after the last of them was aggregated. ``attack.draw`` n > 0 gives the
    adversary the ``adversary_draw`` random stream n instead of its own (same pre-trained model,
    same other clients). Cases (a) and (c) share it.
    """
    trained = pretrain(cfg, case, progress)
    path = attack_path(cfg, case)
    if (path / "attacked.pt").is_file():
        with cache_contents(path / "attacked.pt"):
            saved = _finite(load_torch(path / "attacked.pt"), path / "attacked.pt")
            return Attacked(trained, saved["before"], saved["state"], saved["round"], path, saved["first_round"])
    poisoned = []
    with attack_federation(cfg, trained) as federation:
        while len(poisoned) < cfg.attack.poison_rounds:
            if not poisoned:
                before = {k: v.clone() for k, v in federation.params.items()}
            record = federation.step()
            if record.poisoned:
                poisoned.append(record)
        _check_finite(cfg, federation.params, record.round, "the attack")
    attacked = Attacked(trained, before, federation.state_dict(), record.round, path, poisoned[0].round)
    atomic_torch_save({"before": before, "state": attacked.state, "round": record.round,
                       "first_round": attacked.first_round}, path / "attacked.pt")
    write_json({"config": cfg.to_dict(), "attack_rounds": [r.round for r in poisoned],
                "clients": [r.clients for r in poisoned], "staleness": [r.staleness for r in poisoned]},
               path / "config.json")
    return attacked


def dampening_path(cfg: ExperimentConfig, case: str) -> Path:
    return attack_path(cfg, case) / f"dampening-{cache_key(cfg, 'measure')}.pt"


def _snapshot_rounds(ms) -> set[int]:
    """Rounds after the attack whose global model :func:`dampening_snapshots` keeps: 0, every
    ``curve_every``-th, and the last (``dampening_rounds``)."""
    return {*range(0, ms.dampening_rounds + 1, ms.curve_every), ms.dampening_rounds}


def dampening_snapshots(cfg: ExperimentConfig, case: str, progress: bool = True,
                        attacked: Attacked | None = None) -> dict[int, Params]:
    """Global models at rounds 0, ``measure.curve_every``, ... ``measure.dampening_rounds`` after the
    attack (round 0 = right after it), from benign federated training; cached. ``attacked``: the
    attack of ``(cfg, case)`` already loaded (else :func:`attack` loads it)."""
    ms = cfg.measure
    att = attacked if attacked is not None else attack(cfg, case, progress)
    path = dampening_path(cfg, case)
    kept = _snapshot_rounds(ms)
    if path.is_file():
        with cache_contents(path):
            saved = load_torch(path)
            return {r: saved[r] for r in sorted(kept)}
    snapshots = {0: att.after}
    with make_federation(cfg, att.trained.model, att.after, attack_clients(cfg, att.trained.scenario, 0)) as federation:
        federation.load_state_dict(att.state)
        for r in tqdm(range(1, ms.dampening_rounds + 1), desc=f"dampening case ({case})", disable=not progress):
            federation.step()
            if r in kept:
                _check_finite(cfg, federation.params, att.round + r)
                snapshots[r] = {k: v.clone() for k, v in federation.params.items()}
    atomic_torch_save(snapshots, path)
    return snapshots
