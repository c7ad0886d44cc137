"""Flower ClientApp: one of fmlbd's clients (client 0 the adversary of ``attack``, the others benign).

A node learns which client it is from its node config (``partition-id``; Flower's Simulation Engine
sets it, a SuperNode gets ``--node-config "partition-id=N"``) and may name its own data folder
(``data-root``, default the server's). The run's config arrives in every message, so a node needs
no settings of its own. The client's random stream and state live in the node's ``context.state``:
its updates are the ones it would compute in :class:`fmlbd.federated.Federation` from the same
global models.
"""
from __future__ import annotations

import json
from functools import lru_cache

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from ..builders import attack_clients, build_model, build_scenario
from ..config import config_from_dict, with_overrides
from ..federated import random_streams
from ..parallel import one_thread
from .records import load_state, read_task, reply, save_state

app = ClientApp()


@lru_cache(maxsize=2)
def _setup(config_json: str):
    """Model and clients of a run's config (built once per process)."""
    cfg = config_from_dict(json.loads(config_json))
    scenario = build_scenario(cfg)
    return build_model(cfg, scenario), attack_clients(cfg, scenario, cfg.federation.rounds)


@app.train()
def train(msg: Message, context: Context) -> Message:
    params, cfg, version = read_task(msg.content)
    cid = int(context.node_config["partition-id"])
    if not 0 <= cid < cfg.federation.clients:
        raise ValueError(f"node config partition-id={cid}: the run has clients 0..{cfg.federation.clients - 1}")
    if "data-root" in context.node_config:
        cfg = with_overrides(cfg, {"data.root": str(context.node_config["data-root"])})
    model, clients = _setup(json.dumps(cfg.to_dict(), sort_keys=True))
    client, rng = clients[cid], random_streams(cfg.seed, cfg.federation.clients)[1 + cid]
    saved = context.state.config_records.get("fmlbd")
    state = load_state(saved, rng) if saved is not None else None
    if hasattr(client, "load_state_dict"):  # the node's own state (a fresh one on its first message)
        client.load_state_dict(state or {})
    with one_thread():
        result = client.local_update(model, params, version, rng)
    context.state.config_records["fmlbd"] = save_state(rng, getattr(client, "state_dict", lambda: None)())
    return Message(reply(cid, version, result), reply_to=msg)
