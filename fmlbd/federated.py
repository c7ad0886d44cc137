"""Federated meta-learning with buffered asynchronous aggregation ("M of C").

The simulation is event driven and deterministic for a seed. Each client pulls
the global model (version ``v``), trains locally and uploads the delta
``local - global_v``; its upload arrives ``1 + Exp(delay_spread)`` time units
later (seeded). The server buffers arrivals and, as soon as ``buffer_size``
have arrived, applies ``global += server_lr * mean(deltas)`` and increments the
version (one *round*). The clients whose updates were just aggregated pull the
new model and start again; a late client's update, computed on an older
version, waits in the buffer and counts towards the next round (staleness >= 1).
"""
from __future__ import annotations

import copy
import heapq
import weakref
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from torch import nn

from .aggregation import AggregationRule, Mean
from .functional import flatten, unflatten
from .meta import Params
from .parallel import Pool, one_thread


@dataclass(order=True)
class Update:
    """A client's upload. delta: ``local params - global params of base_version``."""

    arrival: float
    client: int
    base_version: int = field(compare=False)
    delta: Params = field(compare=False, repr=False)
    poisoned: bool = field(default=False, compare=False)

    def to_dict(self) -> dict:
        """Plain values and tensors only, so a saved federation loads with ``torch.load(weights_only=True)``."""
        return {"arrival": self.arrival, "client": self.client, "base_version": self.base_version,
                "delta": self.delta, "poisoned": self.poisoned}

    @classmethod
    def of(cls, saved: "Update | dict") -> "Update":
        """An update from :meth:`to_dict` (or an update itself)."""
        return saved if isinstance(saved, Update) else cls(**saved)


@dataclass(frozen=True)
class RoundRecord:
    """What the server did in one aggregation round."""

    round: int               # global version after the aggregation (1 = first round)
    time: float              # simulated time of the aggregation
    clients: tuple[int, ...]
    staleness: tuple[int, ...]   # round - 1 - base_version of each aggregated update
    poisoned: bool           # a poisoned update was aggregated
    weights: tuple[float, ...] = ()  # how much each update counted in the step (1/n each for the mean)


class Client(Protocol):
    """A participant. ``local_update`` returns ``(delta, poisoned)`` or ``None`` to stay silent.
    A client that changes over time keeps that state in ``state_dict()`` / ``load_state_dict()``
    (which is how it travels to and from a worker process)."""

    def local_update(self, model: nn.Module, params: Params, version: int,
                     rng: np.random.Generator) -> tuple[Params, bool] | None: ...


class Server:
    """Holds the global model; every ``buffer_size`` arrivals, applies ``server_lr`` times the step
    that ``aggregation`` makes of them (:mod:`fmlbd.aggregation`; default the plain mean)."""

    def __init__(self, params: Params, buffer_size: int, server_lr: float,
                 aggregation: AggregationRule | None = None):
        if buffer_size < 1:
            raise ValueError("buffer_size must be >= 1")
        self.params = {k: v.clone() for k, v in params.items()}
        self.buffer_size = buffer_size
        self.server_lr = server_lr
        if aggregation is not None and not isinstance(aggregation, AggregationRule):
            raise TypeError(f"aggregation must be an fmlbd.aggregation.AggregationRule, not {type(aggregation).__name__}")
        self.aggregation = aggregation if aggregation is not None else Mean()
        self.version = 0
        self.buffer: list[Update] = []

    def receive(self, update: Update, now: float = 0.0) -> RoundRecord | None:
        """Buffer ``update``; aggregate and return the round's record when the buffer is full."""
        self.buffer.append(update)
        if len(self.buffer) < self.buffer_size:
            return None
        batch, self.buffer = self.buffer, []
        step, weights = self.aggregation(flatten([u.delta for u in batch]))
        for name, delta in unflatten(step, self.params).items():
            self.params[name] = self.params[name] + self.server_lr * delta
        record = RoundRecord(
            round=self.version + 1,
            time=now,
            clients=tuple(u.client for u in batch),
            staleness=tuple(self.version - u.base_version for u in batch),
            poisoned=any(u.poisoned for u in batch),
            weights=tuple(weights.tolist()),
        )
        self.version += 1
        return record


def random_streams(seed: int, clients: int) -> list[np.random.Generator]:
    """The federation's random generators: the upload delays', then one per client."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(clients + 1)]


class Federation:
    """Event-driven simulation of ``clients`` around one :class:`Server`.

    ``step()`` advances to the next aggregation and returns its :class:`RoundRecord`.
    ``state_dict()`` / ``load_state_dict()`` capture everything (server, in-flight
    uploads, random generators, client states), so a resumed run is bit-identical.
    """

    def __init__(self, model: nn.Module, params: Params, clients: list[Client], buffer_size: int,
                 server_lr: float, delay_spread: float, seed: int, workers: int = 1,
                 aggregation: AggregationRule | None = None):
        if buffer_size > len(clients):
            raise ValueError(f"buffer_size {buffer_size} exceeds the {len(clients)} clients: the server would wait forever")
        self.model = model
        self.clients = clients
        self.server = Server(params, buffer_size, server_lr, aggregation)
        self.delay_spread = delay_spread
        self.delay_rng, *self.client_rngs = random_streams(seed, len(clients))
        self.clock = 0.0
        self.in_flight: list[Update] = []
        self.idle: set[int] = set(range(len(clients)))  # clients waiting for a new global model
        self.workers = min(workers, len(clients))
        self._pool: Pool | None = None

    @property
    def params(self) -> Params:
        return self.server.params

    @property
    def version(self) -> int:
        return self.server.version

    def _local_updates(self, cids: list[int]) -> list:
        """``local_update`` of clients ``cids`` on the current global model, in that order (side by
        side when ``workers`` > 1); their random generators and states advance as if run in turn."""
        params, version = self.server.params, self.server.version
        if self.workers <= 1 or len(cids) <= 1:
            return [self.clients[c].local_update(self.model, params, version, self.client_rngs[c]) for c in cids]
        if self._pool is None:
            self._pool = Pool(self._remote_update, self.workers)
            weakref.finalize(self, self._pool.close)
        replies = self._pool.map([(c, params, version, self.client_rngs[c], _state(self.clients[c])) for c in cids])
        for c, (_, rng, state) in zip(cids, replies):
            self.client_rngs[c] = rng
            if state is not None:
                self.clients[c].load_state_dict(state)
        return [result for result, _, _ in replies]

    def _remote_update(self, job: tuple) -> tuple:
        """In a worker process: one client's local update from the state the parent sent."""
        cid, params, version, rng, state = job
        client = self.clients[cid]
        if state is not None:
            client.load_state_dict(state)
        result = client.local_update(self.model, params, version, rng)
        return result, rng, _state(client)

    def close(self) -> None:
        """Stop the worker processes, if any (a later step starts new ones)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> "Federation":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start_idle_clients(self) -> None:
        cids = sorted(self.idle)
        for cid, result in zip(cids, self._local_updates(cids)):
            if result is None:  # silent: stays idle and is asked again next round
                continue
            delta, poisoned = result
            arrival = self.clock + 1.0 + self.delay_rng.exponential(self.delay_spread)
            heapq.heappush(self.in_flight, Update(arrival, cid, self.server.version, delta, poisoned))
            self.idle.discard(cid)

    def step(self) -> RoundRecord:
        """Run the simulation until the next aggregation; return its record (computed on one torch
        thread, so it does not depend on the core count)."""
        with one_thread():
            return self._step()

    def _step(self) -> RoundRecord:
        self._start_idle_clients()
        while True:
            if not self.in_flight:
                raise RuntimeError("no client is training: every client is silent, so no round can complete")
            update = heapq.heappop(self.in_flight)
            self.clock = update.arrival
            record = self.server.receive(update, self.clock)
            if record is not None:
                self.idle.update(record.clients)
                return record

    def reseed_client(self, client: int, rng: np.random.Generator) -> None:
        """Replace client ``client``'s random stream (e.g. another draw of the adversary)."""
        if not 0 <= client < len(self.clients):
            raise ValueError(f"no client {client}: the federation has clients 0..{len(self.clients) - 1}")
        self.client_rngs[client] = rng

    def state_dict(self) -> dict:
        return {
            "params": self.server.params,
            "version": self.server.version,
            "buffer": [u.to_dict() for u in self.server.buffer],
            "clock": self.clock,
            "in_flight": [u.to_dict() for u in self.in_flight],
            "idle": sorted(self.idle),
            "delay_rng": self.delay_rng.bit_generator.state,
            "client_rngs": [r.bit_generator.state for r in self.client_rngs],
            "clients": [getattr(c, "state_dict", dict)() for c in self.clients],
            "aggregation": self.server.aggregation.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        state = copy.deepcopy(state)
        self.server.params = state["params"]
        self.server.version = state["version"]
        self.server.buffer = [Update.of(u) for u in state["buffer"]]
        self.clock = state["clock"]
        self.in_flight = [Update.of(u) for u in state["in_flight"]]
        heapq.heapify(self.in_flight)
        self.idle = set(state["idle"])
        self.delay_rng.bit_generator.state = state["delay_rng"]
        for rng, s in zip(self.client_rngs, state["client_rngs"]):
            rng.bit_generator.state = s
        for client, s in zip(self.clients, state["clients"]):
            if hasattr(client, "load_state_dict"):
                client.load_state_dict(s)
        if state.get("aggregation"):
            self.server.aggregation.load_state_dict(state["aggregation"])


def _state(client: Client) -> dict | None:
    return client.state_dict() if hasattr(client, "state_dict") else None
