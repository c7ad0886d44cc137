"""Flower's Simulation Engine on one machine: the ServerApp and ClientApp of this package, one virtual
SuperNode per client, started from Python (``flwr run`` with a local-simulation federation runs the
same apps from ``flower/pyproject.toml``)."""
from __future__ import annotations

import pandas as pd
from flwr.app import Context
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

from ..config import ExperimentConfig
from . import client_app
from .server_app import Run, buffered_run, scores


def simulate(cfg: ExperimentConfig, cpus_per_client: float = 1.0, pretrained: bool = False,
             verbose: bool = False, client: ClientApp | None = None, **settings) -> tuple[Run, pd.DataFrame]:
    """Pre-train (or, ``pretrained``, start from fmlbd's pre-trained model) and attack on the Simulation
    Engine; the run and its scores (see :func:`fmlbd.flower.server_app.buffered_run` and
    :func:`~fmlbd.flower.server_app.scores`). ``cpus_per_client``: CPUs each virtual client reserves
    (1 on 2 cores: two train at a time). ``client``: the ClientApp (default fmlbd's own,
    :mod:`fmlbd.flower.client_app`); ``settings``: further settings of :func:`buffered_run`
    (``max_norm``, ``reply_timeout``, ``log``)."""
    done: dict[str, Run] = {}
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        done["run"] = buffered_run(grid, cfg, pretrained, **settings)

    run_simulation(server_app=app, client_app=client or client_app.app, num_supernodes=cfg.federation.clients,
                   backend_config={"client_resources": {"num_cpus": cpus_per_client, "num_gpus": 0.0}},
                   verbose_logging=verbose)
    if "run" not in done:
        raise RuntimeError("the Flower simulation ended without finishing the run; rerun with verbose=True")
    return done["run"], scores(cfg, done["run"])
