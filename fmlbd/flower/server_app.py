"""Flower ServerApp: the protocol's buffered asynchronous server ("M of C").

Every idle client gets the global model; replies are taken as they arrive (``Grid.pull_messages``
polls) and fed to :class:`fmlbd.federated.Server`, which aggregates with the config's rule as soon
as ``federation.buffer_size`` updates are in. The clients whose updates were aggregated get the new
model; a late client's update, computed on an older version, counts in the next round with its
staleness. The run pre-trains for ``federation.rounds`` rounds, then goes on until the adversary's
poisoned update has been aggregated, and scores the global model at both points
(:func:`fmlbd.evaluation.attack_metrics`).

Run config (``flwr run`` / pyproject ``[tool.flwr.app.config]``): ``profile``, ``seed``, ``set``
(space-separated ``KEY=VALUE`` overrides, as the CLI's ``--set``), ``data-root``, ``results-dir``,
``start`` ("scratch": pre-train on Flower; "pretrained": start from fmlbd's pre-trained model, so
only the attack runs on Flower).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from flwr.app import Context, Message
from flwr.serverapp import Grid, ServerApp

from ..aggregation import flatten
from ..builders import aggregation_rule, build_model, build_scenario, initial_params, native_attention
from ..config import ExperimentConfig, load_config, parse_overrides
from ..evaluation import attack_metrics, main_task_accuracies
from ..federated import RoundRecord, Server, Update
from ..functional import Params
from ..models import ConvNet
from ..pipeline import pretrain
from ..results import save_table
from ..splits import Scenario
from .records import record_weights, task

app = ServerApp()


@dataclass
class Run:
    """What a buffered run produced: the round records, one row per aggregated update (round, client,
    base version, staleness, poisoned, L2 norm of its delta) and the global model after pre-training
    and right after the attack; with the model and scenario that score them."""

    model: ConvNet
    scenario: Scenario
    records: list[RoundRecord] = field(default_factory=list)
    updates: list[dict] = field(default_factory=list)
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
                 node_timeout: float = 120.0, log=print) -> Run:
    """Pre-train for ``federation.rounds`` rounds, then run until a poisoned update was aggregated.
    ``pretrained``: start from the global model of :func:`fmlbd.pipeline.pretrain` instead (cached, or
    shipped with fmlbd), at version ``federation.rounds``: only the attack runs on Flower.
    Every ``eval.log_every`` rounds, and at the attack, ``log`` gets a line with the round, its clients
    and their staleness, and the global model's main-task accuracy (``eval.log_episodes`` episodes)."""
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
    pending: dict[str, int] = {}  # message id -> node

    def send(nodes) -> None:
        ids = grid.push_messages([Message(task(server.params, cfg, server.version), dst_node_id=n,
                                          message_type="train") for n in nodes])
        pending.update(zip(ids, nodes))

    node_of: dict[int, int] = {}  # client id -> node
    send(wait_for_nodes(grid, cfg.federation.clients, node_timeout))
    silent: list[int] = []
    buffered: list[dict] = []  # the updates in the server's buffer
    while "attacked" not in run.models:
        replies = list(grid.pull_messages(list(pending)))
        if not replies:
            time.sleep(poll)
        for message in replies:
            node = pending.pop(message.metadata.reply_to_message_id)
            if message.has_error():
                raise RuntimeError(f"client on node {node} failed: {message.error.reason}")
            about = message.content.config_records["about"]
            cid = int(about["client"])
            node_of[cid] = node
            if about["silent"]:
                silent.append(node)
                continue
            update = Update(time.monotonic() - start, cid, int(about["base_version"]),
                            record_weights(message.content.array_records["update"]), bool(about["poisoned"]))
            buffered.append({"client": cid, "base_version": update.base_version, "poisoned": update.poisoned,
                             "norm": float(flatten([update.delta]).norm())})
            record = server.receive(update, update.arrival)
            if record is None:
                continue
            run.records.append(record)
            run.updates += [row | {"round": record.round, "staleness": record.round - 1 - row["base_version"]}
                            for row in buffered]
            buffered = []
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
            send([node_of[c] for c in record.clients] + silent)
            silent = []
    run.seconds = time.monotonic() - start
    return run


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
    """Save the scores (``flower-seed<seed>.csv``) and the aggregated updates
    (``flower-updates-seed<seed>.csv``) under ``<results_dir>/<profile>/``; returns that folder."""
    out = Path(cfg.results_dir) / cfg.profile
    save_table(table, out / f"flower-seed{cfg.seed}.csv", cfg.to_dict(), seconds=run.seconds, rounds=len(run.records))
    save_table(pd.DataFrame(run.updates), out / f"flower-updates-seed{cfg.seed}.csv", cfg.to_dict())
    return out


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = config_of(dict(context.run_config))
    start = str(context.run_config.get("start", "scratch"))
    if start not in ("scratch", "pretrained"):
        raise ValueError(f"run config start={start!r}: use 'scratch' or 'pretrained'")
    run = buffered_run(grid, cfg, pretrained=start == "pretrained")
    table = scores(cfg, run)
    save_run(cfg, run, table)
    print(table.pivot(index="metric", columns="phase", values="value").to_string())
