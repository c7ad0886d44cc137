"""A ClientApp that lies and sends garbage on purpose, to see the server refuse it: fmlbd's own
clients (:mod:`fmlbd.flower.client_app`), except that the last client (``partition-id`` = clients - 1)
spoils its first replies, one fault each in the order of :data:`FAULTS`. The last fault, a crash,
repeats on every message (Flower keeps no state of a call that raised), so the server drops it.
Run it in place of the honest app: ``simulate(cfg, client=faulty_client.app)``; the server's
``run.rejected`` (and ``flower-refused-seed<seed>.csv``) lists what it refused and why.
"""
from __future__ import annotations

import torch
from flwr.app import ConfigRecord, Context, Message
from flwr.clientapp import ClientApp

from . import client_app
from .records import read_task, record_weights, weights_record


def _weights(change):
    """A fault that rewrites the update's weights with ``change(params) -> params``."""
    def spoil(content) -> None:
        content.array_records["update"] = weights_record(change(record_weights(content.array_records["update"])))
    return spoil


def _about(key, value):
    """A fault that rewrites one field of the reply's ``about`` record."""
    def spoil(content) -> None:
        about = dict(content.config_records["about"])
        content.config_records["about"] = ConfigRecord(about | {key: value})
    return spoil


def _first(params, fn):
    """``params`` with ``fn`` applied to its first tensor."""
    name = next(iter(params))
    return params | {name: fn(params[name])}


def _crash(content) -> None:
    raise RuntimeError("this client crashes on purpose")


#: the faults, in the order the faulty client commits them: name -> what it does to its reply
FAULTS = {
    "NaN values": _weights(lambda p: _first(p, lambda t: torch.full_like(t, float("nan")))),
    "norm 1e30": _weights(lambda p: {k: v * 1e30 for k, v in p.items()}),
    "wrong shape": _weights(lambda p: _first(p, lambda t: t.flatten()[:-1])),
    "wrong dtype": _weights(lambda p: {k: v.double() for k, v in p.items()}),
    "missing key": _weights(lambda p: dict(list(p.items())[1:])),
    "extra key": _weights(lambda p: p | {"extra.weight": torch.zeros(3)}),
    "spoofed id": _about("client", 0),
    "older base version": _about("base_version", -1),
    "crash": _crash,
}

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    reply = client_app.train(msg, context)
    cid, clients = int(context.node_config["partition-id"]), read_task(msg.content)[1].federation.clients
    done = int(context.state.config_records["faulty"]["replies"]) if "faulty" in context.state.config_records else 0
    context.state.config_records["faulty"] = ConfigRecord({"replies": done + 1})
    if cid != clients - 1 or "update" not in reply.content.array_records:
        return reply
    content = reply.content
    list(FAULTS.values())[min(done, len(FAULTS) - 1)](content)
    return Message(content, reply_to=msg)
