"""What travels in Flower messages: weights as ArrayRecords, settings and client state as ConfigRecords.

A message to a client holds ``"global"`` (the global weights) and ``"task"`` (the run's config as
JSON, the global version); its reply holds ``"update"`` (the delta, absent when the client stays
silent) and ``"about"`` (client id, base version, poisoned, silent).
"""
from __future__ import annotations

import json

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, RecordDict

from ..config import ExperimentConfig, config_from_dict
from ..functional import Params


def weights_record(params: Params) -> ArrayRecord:
    return ArrayRecord.from_torch_state_dict({k: v.detach().cpu() for k, v in params.items()})


def record_weights(record: ArrayRecord) -> Params:
    return {k: v.clone() for k, v in record.to_torch_state_dict().items()}


def task(params: Params, cfg: ExperimentConfig, version: int) -> RecordDict:
    """The content of a training message: global weights of ``version`` and the run's config."""
    return RecordDict({"global": weights_record(params),
                       "task": ConfigRecord({"config": json.dumps(cfg.to_dict()), "version": version})})


def read_task(content: RecordDict) -> tuple[Params, ExperimentConfig, int]:
    about = content.config_records["task"]
    return record_weights(content.array_records["global"]), config_from_dict(json.loads(about["config"])), \
        int(about["version"])


def reply(client: int, version: int, result: tuple[Params, bool] | None) -> RecordDict:
    """The content of a client's reply: its delta (none when silent) and what the server must know."""
    records = {"about": ConfigRecord({"client": client, "base_version": version,
                                      "poisoned": bool(result and result[1]), "silent": result is None})}
    if result is not None:
        records["update"] = weights_record(result[0])
    return RecordDict(records)


def save_state(rng: np.random.Generator, client_state: dict | None) -> ConfigRecord:
    """A client's random stream and state, kept in the node's ``context.state`` between messages."""
    return ConfigRecord({"rng": json.dumps(rng.bit_generator.state), "client": json.dumps(client_state)})


def load_state(record: ConfigRecord, rng: np.random.Generator) -> dict | None:
    """Restore ``rng`` from a :func:`save_state` record; returns the client's state."""
    rng.bit_generator.state = json.loads(str(record["rng"]))
    return json.loads(str(record["client"]))

