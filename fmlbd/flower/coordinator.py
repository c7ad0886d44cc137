"""The buffered server's dealings with its nodes, apart from Flower's messages: which node is which
client, which version each was sent, which replies are refused and why, who waits, who failed and
who is gone. :mod:`fmlbd.flower.server_app` only moves messages (in both of Flower's engines); every
decision is made here, so a federation survives a client that lies or sends garbage, and the rules
are tested without Flower.

- An update is refused unless its parameter names, shapes and dtypes are exactly the global
  model's, its values finite and its L2 norm at most ``max_norm`` (:func:`update_problem`).
- Identity comes from the node, not from what a reply says: a node's first reply binds it to the
  client id it claims (in range, and not already another node's); later claims of another id are
  refused. With SuperNode authentication a node id belongs to a registered key.
- Staleness comes from the version the server sent to that node; a reply that claims another base
  version is refused. ``poisoned`` is only a label for the scoreboard: aggregation never reads it.
- A refused reply counts as the client's silence: the node gets work again after the next
  aggregation. A client that fails (an error reply) gets work again at once, and is dropped after
  :data:`MAX_FAILURES` failures in a row; a node that does not reply within ``reply_timeout``
  seconds is dropped. The federation goes on while at least ``buffer_size`` nodes are left.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Callable

import torch

from ..federated import RoundRecord, Server, Update
from ..functional import Params, flatten

#: failures (error replies) in a row after which a node is dropped
MAX_FAILURES = 3


def update_problem(delta, like: Params, max_norm: float) -> str | None:
    """Why ``delta`` cannot be a client's update of the model whose weights are ``like`` (None: it
    can): the exact parameter names, shapes and dtypes of ``like``, finite values, L2 norm at most
    ``max_norm``."""
    if not isinstance(delta, dict):
        return f"the update is a {type(delta).__name__}, not named tensors"
    missing, extra = sorted(set(like) - set(delta)), sorted(set(delta) - set(like))
    if missing or extra:
        return f"parameter names differ from the model's: missing {missing}, unexpected {extra}"
    for name, reference in like.items():
        value = delta[name]
        if not isinstance(value, torch.Tensor):
            return f"{name} is a {type(value).__name__}, not a tensor"
        if value.shape != reference.shape:
            return f"{name} has shape {tuple(value.shape)}, the model's is {tuple(reference.shape)}"
        if value.dtype != reference.dtype:
            return f"{name} has dtype {value.dtype}, the model's is {reference.dtype}"
        if not bool(torch.isfinite(value).all()):
            return f"{name} has non-finite values"
    norm = math.sqrt(sum(float((v.double() ** 2).sum()) for v in delta.values()))
    if not norm <= max_norm:
        return f"L2 norm {norm:.3g} is above the bound {max_norm:g} (run config max-update-norm)"
    return None


def _about(about) -> tuple[int, int, bool, bool]:
    """Client id, base version, poisoned and silent of a reply's ``about``, each of its exact type."""
    values = tuple(about[k] for k in ("client", "base_version", "poisoned", "silent"))
    types = (int, int, bool, bool)
    if any(type(v) is not t for v, t in zip(values, types)):
        raise TypeError("about must hold client, base_version (integers), poisoned and silent (booleans), "
                        f"not {[type(v).__name__ for v in values]}")
    return values


class Coordinator:
    """The server's side of a buffered run with ``nodes`` (Flower node ids) as ``clients`` clients.

    The driver sends the global model to the nodes :meth:`take` returns and registers each message
    with :meth:`sent`; it hands every reply to :meth:`replied` (or :meth:`failed` for an error
    reply) and calls :meth:`expire` while nothing arrives. Times are seconds on one clock.
    ``rejected`` lists every refusal and drop (round, node, client, reason); ``updates`` one row per
    aggregated update (client, base version, poisoned label, L2 norm, round, staleness).
    """

    def __init__(self, server: Server, nodes: list[int], clients: int, max_norm: float,
                 reply_timeout: float, log: Callable[[str], None] = print):
        self.server, self.clients, self.max_norm, self.reply_timeout, self.log = \
            server, clients, max_norm, reply_timeout, log
        self.alive = set(nodes)
        self.client_of: dict[int, int] = {}    # node -> client id, bound by its first reply
        self.node_of: dict[int, int] = {}      # client id -> node
        self.pending: dict[str, tuple[int, int, float]] = {}  # message id -> node, version sent, time sent
        self.queue: list[int] = list(nodes)    # nodes to send the global model to now
        self.waiting: list[int] = []           # nodes that get work after the next aggregation
        self.failures: Counter = Counter()     # error replies in a row, per node
        self.buffered: list[dict] = []         # rows of the updates in the server's buffer
        self.updates: list[dict] = []
        self.rejected: list[dict] = []

    def take(self) -> list[int]:
        """The nodes to send the current global model to now."""
        nodes, self.queue = [n for n in self.queue if n in self.alive], []
        return nodes

    def sent(self, message_id: str, node: int, now: float) -> None:
        self.pending[message_id] = (node, self.server.version, now)

    def failed(self, message_id: str, reason: str, now: float) -> None:
        """An error reply (the client raised): work again at once, or dropped after MAX_FAILURES."""
        node, _, _ = self.pending.pop(message_id)
        lines = [line.strip() for line in str(reason).splitlines() if line.strip()]
        reason = lines[-1][:300] if lines else "no reason given"  # a traceback's last line
        self.failures[node] += 1
        if self.failures[node] >= MAX_FAILURES:
            self._drop(node, f"failed {MAX_FAILURES} times in a row, last: {reason}")
        else:
            self._note(node, f"failed: {reason}")
            self.queue.append(node)

    def replied(self, message_id: str, about: dict | None, read_update: Callable[[], Params],
                now: float) -> RoundRecord | None:
        """A reply: ``about`` (client, base_version, poisoned, silent; None if unreadable) and
        ``read_update()`` its weights. Returns the round's record when it completed a round."""
        node, version, _ = self.pending.pop(message_id)
        self.failures[node] = 0
        try:
            client, base, poisoned, silent = _about(about)
        except (KeyError, TypeError, ValueError) as err:
            return self._refuse(node, f"unreadable reply: {err}")
        problem = self._identity(node, client) or (
            None if base == version else f"claims base version {base}, was sent version {version}")
        if problem:
            return self._refuse(node, problem)
        if silent:
            self.waiting.append(node)
            return self._unstick()
        try:
            delta = read_update()
        except Exception as err:  # whatever a hostile reply makes the decoder raise
            return self._refuse(node, f"unreadable update ({type(err).__name__}: {err})")
        if problem := update_problem(delta, self.server.params, self.max_norm):
            return self._refuse(node, problem)
        self.buffered.append({"client": client, "base_version": version, "poisoned": poisoned,
                              "norm": float(flatten([delta]).norm())})
        record = self.server.receive(Update(now, client, version, delta, poisoned), now)
        if record is None:
            return self._unstick()
        self.updates += [row | {"round": record.round, "staleness": record.round - 1 - row["base_version"]}
                         for row in self.buffered]
        self.buffered = []
        self.queue += [self.node_of[c] for c in record.clients] + self.waiting
        self.waiting = []
        return record

    def expire(self, now: float) -> None:
        """Drop the nodes whose reply is more than ``reply_timeout`` seconds late."""
        for message_id, (node, _, since) in list(self.pending.items()):
            if now - since > self.reply_timeout:
                del self.pending[message_id]
                self._drop(node, f"no reply within {self.reply_timeout:g} s (run config reply-timeout)")
        self._unstick()

    def _identity(self, node: int, client: int) -> str | None:
        bound = self.client_of.get(node)
        if bound is not None:
            return None if client == bound else f"claims client id {client}, but this node is client {bound}"
        if not 0 <= client < self.clients:
            return f"claims client id {client}: the run has clients 0..{self.clients - 1}"
        if client in self.node_of:
            return f"claims client id {client}, already node {self.node_of[client]}'s"
        self.client_of[node], self.node_of[client] = client, node
        return None

    def _note(self, node: int, reason: str) -> None:
        client = self.client_of.get(node)
        self.rejected.append({"round": self.server.version + 1, "node": node, "client": client, "reason": reason})
        self.log(f"round {self.server.version + 1}: client {client} (node {node}): {reason}")

    def _refuse(self, node: int, reason: str) -> None:
        """A refused reply counts as silence: the node waits for the next aggregation."""
        self._note(node, f"update refused: {reason}")
        self.waiting.append(node)
        return self._unstick()

    def _drop(self, node: int, reason: str) -> None:
        self.alive.discard(node)
        self._note(node, f"dropped: {reason}")
        if len(self.alive) < self.server.buffer_size:
            raise RuntimeError(f"only {len(self.alive)} clients are left, fewer than federation.buffer_size="
                               f"{self.server.buffer_size}: the server cannot aggregate (see the log above)")

    def _unstick(self) -> None:
        """With nothing in flight the buffer cannot fill: the waiting nodes get work now."""
        if not self.pending and not self.queue:
            self.queue, self.waiting = self.waiting, []
