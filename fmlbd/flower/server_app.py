"""Flower ServerApp: the protocol's buffered asynchronous server ("M of C").

Every idle client gets the global model; replies are taken as they arrive (``Grid.pull_messages``
polls), checked by :class:`fmlbd.flower.coordinator.Coordinator` (which refuses garbage and lies,
and drops nodes that fail or fall silent) and fed to :class:`fmlbd.federated.Server`, which
aggregates with the config's rule as soon as ``federation.buffer_size`` updates are in. The clients
whose updates were aggregated get the new model; a late client's update, computed on an older
version, counts in the next round with its staleness. The run pre-trains for ``federation.rounds``
rounds, then goes on until the adversary's poisoned update has been aggregated, and scores the
global model at both points (:func:`fmlbd.evaluation.attack_metrics`).

Run config (``flwr run`` / pyproject ``[tool.flwr.app.config]``): ``profile``, ``seed``, ``set``
(space-separated ``KEY=VALUE`` overrides, as the CLI's ``--set``), ``data-root``, ``results-dir``,
``start`` ("scratch": pre-train on Flower; "pretrained": start from fmlbd's pre-trained model, so
only the attack runs on Flower), ``max-update-norm`` and ``reply-timeout`` (how the server treats
its clients: :mod:`fmlbd.flower.coordinator`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from flwr.app import Context, Message
from flwr.serverapp import Grid, ServerApp

from ..builders import aggregation_rule, build_model, build_scenario, initial_params, native_attention
from ..checks import number
from ..config import ExperimentConfig, load_config, parse_overrides
from ..evaluation import attack_metrics, main_task_accuracies
from ..federated import RoundRecord, Server
from ..functional import Params
from ..models import ConvNet
from ..pipeline import pretrain
from ..results import save_table
from ..splits import Scenario
from .coordinator import Coordinator
from .records import record_weights, task

app = ServerApp()

#: default bound on an update's L2 norm (run config ``max-update-norm``): far above any benign or
#: boosted update of the profiles (quick: benign about 1, the boosted attack about 6)
MAX_UPDATE_NORM = 1e4
#: default seconds a node may take to reply before it is dropped (run config ``reply-timeout``)
REPLY_TIMEOUT = 600.0


@dataclass
class Run:
    """What a buffered run produced: the round records, one row per aggregated update (round, client,
    base version, staleness, poisoned, L2 norm of its delta), one per refused reply or dropped node
    (round, node, client, reason) and the global model after pre-training and right after the attack;
    with the model and scenario that score them."""

    model: ConvNet
    scenario: Scenario
    records: list[RoundRecord] = field(default_factory=list)
    updates: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    models: dict = field(default_factory=dict)
    seconds: float = 0.0


def wait_for_nodes(grid: Grid, count: int, timeout: float) -> list[int]:
    """The first ``count`` node ids, once that many nodes are connected."""
    deadline = time.monotonic() + timeout
    while len(nodes := sorted(grid.get_node_ids())) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(nodes)} of the {count} clients (federation.clients) connected within "
                               f"{timeout:.0f} s: start one SuperNode per client")
        time.sleep(0.5)
    return nodes[:count]


def buffered_run(grid: Grid, cfg: ExperimentConfig, pretrained: bool = False, poll: float = 0.01,
                 node_timeout: float = 120.0, max_norm: float = MAX_UPDATE_NORM,
                 reply_timeout: float = REPLY_TIMEOUT, log=print) -> Run:
    """Pre-train for ``federation.rounds`` rounds, then run until a poisoned update was aggregated.
    ``pretrained``: start from the global model of :func:`fmlbd.pipeline.pretrain` instead (cached, or
    shipped with fmlbd), at version ``federation.rounds``: only the attack runs on Flower.
    Replies are checked and nodes kept or dropped by :class:`~fmlbd.flower.coordinator.Coordinator`
    (``max_norm``: bound on an update's L2 norm; ``reply_timeout``: seconds before a silent node is
    dropped). Every ``eval.log_every`` rounds, and at the attack, ``log`` gets a line with the round,
    its clients and their staleness, and the global model's main-task accuracy (``eval.log_episodes``
    episodes); every refusal and drop gets one too."""
    start = time.monotonic()
    if pretrained:
        trained = pretrain(cfg, progress=False)
        run, params = Run(trained.model, trained.scenario), trained.params
        run.models["pre-trained"] = params
    else:
        scenario = build_scenario(cfg)
        run = Run(build_model(cfg, scenario), scenario)
        params = initial_params(cfg, run.model)
    model, scenario = run.model, run.scenario
    server = Server(params, cfg.federation.buffer_size, cfg.federation.server_lr, aggregation_rule(cfg))
    server.version = cfg.federation.rounds if pretrained else 0
    nodes = Coordinator(server, wait_for_nodes(grid, cfg.federation.clients, node_timeout), cfg.federation.clients,
                        max_norm, reply_timeout, log)
    run.updates, run.rejected = nodes.updates, nodes.rejected
    while "attacked" not in run.models:
        if todo := nodes.take():
            ids = grid.push_messages([Message(task(server.params, cfg, server.version), dst_node_id=n,
                                              message_type="train") for n in todo])
            for message_id, node in zip(ids, todo):
                nodes.sent(message_id, node, time.monotonic() - start)
        replies = list(grid.pull_messages(list(nodes.pending)))
        if not replies:
            nodes.expire(time.monotonic() - start)
            time.sleep(poll)
        for message in replies:
            message_id, now = message.metadata.reply_to_message_id, time.monotonic() - start
            if message_id not in nodes.pending:  # the late reply of a dropped node
                continue
            if message.has_error():
                nodes.failed(message_id, message.error.reason, now)
                continue
            record = nodes.replied(message_id, _about(message), lambda m=message: _update(m), now)
            if record is None:
                continue
            run.records.append(record)
            if record.round % cfg.eval.log_every == 0 or record.poisoned:
                acc = main_task_accuracies(cfg, model, server.params, scenario, episodes=cfg.eval.log_episodes,
                                           attention=native_attention(cfg)).mean()
                log(f"round {record.round}: clients {record.clients}, staleness {record.staleness}"
                    f"{', poisoned update aggregated' if record.poisoned else ''}; main-task accuracy {acc:.3f} "
                    f"({time.monotonic() - start:.0f} s)")
            if record.round == cfg.federation.rounds:
                run.models["pre-trained"] = dict(server.params)
            if record.poisoned and record.round > cfg.federation.rounds:
                run.models["attacked"] = dict(server.params)
                break
    run.seconds = time.monotonic() - start
    return run


def _about(message: Message) -> dict | None:
    """The ``about`` record of a reply as a dict (None when it has none)."""
    records = message.content.config_records
    return dict(records["about"]) if "about" in records else None


def _update(message: Message) -> Params:
    """The update's weights of a reply (raises on a malformed one; the coordinator refuses it)."""
    return record_weights(message.content.array_records["update"])


def phase_scores(cfg: ExperimentConfig, model, scenario: Scenario, models: dict[str, Params]) -> pd.DataFrame:
    """Tidy ``phase, metric, value``: the four metrics (:func:`fmlbd.evaluation.attack_metrics`) of
    each global model in ``models`` (phase -> weights), with the config's native classifier."""
    return pd.DataFrame([{"phase": phase, "metric": metric, "value": value}
                         for phase, params in models.items()
                         for metric, value in attack_metrics(cfg, model, params, scenario, cfg.case,
                                                             attention=native_attention(cfg)).items()])


def scores(cfg: ExperimentConfig, run: Run) -> pd.DataFrame:
    """The four metrics of the global model after pre-training and right after the attack."""
    return phase_scores(cfg, run.model, run.scenario, run.models)


def config_of(run_config: dict) -> ExperimentConfig:
    """The experiment config of a Flower run config (see the module docstring)."""
    overrides = parse_overrides(str(run_config.get("set", "")).split())
    for key, name in (("seed", "seed"), ("data-root", "data.root"), ("results-dir", "results_dir")):
        if key in run_config:
            overrides[name] = run_config[key]
    return load_config(str(run_config.get("profile", "quick")), overrides)


def save_run(cfg: ExperimentConfig, run: Run, table: pd.DataFrame) -> Path:
    """Save the scores (``flower-seed<seed>.csv``), the aggregated updates
    (``flower-updates-seed<seed>.csv``) and the refused replies and dropped nodes
    (``flower-refused-seed<seed>.csv``) under ``<results_dir>/<profile>/``; returns that folder."""
    out = Path(cfg.results_dir) / cfg.profile
    save_table(table, out / f"flower-seed{cfg.seed}.csv", cfg.to_dict(), seconds=run.seconds, rounds=len(run.records))
    save_table(pd.DataFrame(run.updates), out / f"flower-updates-seed{cfg.seed}.csv", cfg.to_dict())
    save_table(pd.DataFrame(run.rejected, columns=["round", "node", "client", "reason"]),
               out / f"flower-refused-seed{cfg.seed}.csv", cfg.to_dict())
    return out


def positive(run_config: dict, key: str, default: float) -> float:
    """Run config ``key`` as a positive finite number (``default`` when absent)."""
    value = run_config.get(key, default)
    if problem := number()(value):
        raise ValueError(f"run config {key}={value!r}: must be {problem}, e.g. {key}={default:g}")
    return float(value)


@app.main()
def main(grid: Grid, context: Context) -> None:
    settings = dict(context.run_config)
    cfg = config_of(settings)
    start = str(settings.get("start", "scratch"))
    if start not in ("scratch", "pretrained"):
        raise ValueError(f"run config start={start!r}: use 'scratch' or 'pretrained'")
    run = buffered_run(grid, cfg, pretrained=start == "pretrained",
                       max_norm=positive(settings, "max-update-norm", MAX_UPDATE_NORM),
                       reply_timeout=positive(settings, "reply-timeout", REPLY_TIMEOUT))
    table = scores(cfg, run)
    save_run(cfg, run, table)
    print(table.pivot(index="metric", columns="phase", values="value").to_string())
