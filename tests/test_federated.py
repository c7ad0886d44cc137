import numpy as np
import pytest
import torch
from torch import nn

from fmlbd.federated import Federation, Server, Update


def delta(value: float) -> dict:
    return {"w": torch.full((2,), value)}


def test_server_aggregates_mean_of_every_three_updates():
    server = Server({"w": torch.zeros(2)}, buffer_size=3, server_lr=1.0)
    assert server.receive(Update(0.1, 1, 0, delta(3.0))) is None
    assert server.receive(Update(0.2, 2, 0, delta(6.0))) is None
    record = server.receive(Update(0.3, 3, 0, delta(0.0)), now=0.3)
    assert record is not None and record.round == 1 and record.clients == (1, 2, 3)
    assert torch.allclose(server.params["w"], torch.full((2,), 3.0))
    assert server.version == 1 and server.buffer == []


def test_late_update_counts_in_next_round_with_its_staleness():
    server = Server({"w": torch.zeros(2)}, buffer_size=3, server_lr=0.5)
    for cid in (1, 2, 3):
        server.receive(Update(cid, cid, 0, delta(2.0)))
    assert server.version == 1 and torch.allclose(server.params["w"], torch.full((2,), 1.0))
    # client 0 started on version 0 and arrives late: it is buffered for round 2
    assert server.receive(Update(4.0, 0, 0, delta(4.0))) is None
    server.receive(Update(5.0, 1, 1, delta(1.0)))
    record = server.receive(Update(6.0, 2, 1, delta(1.0)))
    assert record.round == 2 and record.clients == (0, 1, 2) and record.staleness == (1, 0, 0)
    assert torch.allclose(server.params["w"], torch.full((2,), 1.0 + 0.5 * 2.0))


class CountingClient:
    """Uploads delta = client id + 1 and records the versions it trained on."""

    def __init__(self, cid):
        self.cid, self.versions = cid, []

    def local_update(self, model, params, version, rng):
        self.versions.append(version)
        return {k: torch.full_like(v, self.cid + 1.0) for k, v in params.items()}, False

    def state_dict(self):
        return {"versions": list(self.versions)}

    def load_state_dict(self, s):
        self.versions = list(s["versions"])


def make_federation(seed=0):
    clients = [CountingClient(i) for i in range(4)]
    return Federation(nn.Identity(), {"w": torch.zeros(1)}, clients, 3, 1.0, 0.5, seed), clients


def test_federation_buffers_three_of_four_and_reuses_late_updates():
    fed, clients = make_federation()
    records = [fed.step() for _ in range(30)]
    assert [r.round for r in records] == list(range(1, 31))
    assert all(len(r.clients) == 3 and len(set(r.clients)) == 3 for r in records)
    # exactly one client is late each round after the first; its stale update is used next round
    assert records[0].staleness == (0, 0, 0)
    assert any(max(r.staleness) >= 1 for r in records[1:])
    # every upload is eventually aggregated: per-client uploads = aggregated counts + in flight
    aggregated = np.bincount([c for r in records for c in r.clients], minlength=4)
    in_flight = np.bincount([u.client for u in fed.in_flight + fed.server.buffer], minlength=4)
    assert list(aggregated + in_flight) == [len(c.versions) for c in clients]
    # global model = sum over rounds of the mean of aggregated deltas
    expected = sum(np.mean([c + 1 for c in r.clients]) for r in records)
    assert fed.params["w"].item() == pytest.approx(expected)


def test_federation_is_deterministic_and_resumes_exactly():
    a, _ = make_federation(seed=3)
    ra = [a.step() for _ in range(20)]
    b, _ = make_federation(seed=3)
    rb = [b.step() for _ in range(8)]
    state = b.state_dict()
    c, _ = make_federation(seed=99)
    c.load_state_dict(state)
    rc = rb + [c.step() for _ in range(12)]
    assert ra == rc
    assert torch.equal(a.params["w"], c.params["w"])
    d, _ = make_federation(seed=4)
    assert [d.step() for _ in range(20)] != ra


def test_silent_clients_leave_the_round_to_the_others():
    class Silent(CountingClient):
        def local_update(self, model, params, version, rng):
            return None

    clients = [Silent(0)] + [CountingClient(i) for i in (1, 2, 3)]
    fed = Federation(nn.Identity(), {"w": torch.zeros(1)}, clients, 3, 1.0, 0.5, 0)
    for _ in range(5):
        assert sorted(fed.step().clients) == [1, 2, 3]


def test_buffer_larger_than_clients_is_rejected():
    with pytest.raises(ValueError, match="wait forever"):
        Federation(nn.Identity(), {"w": torch.zeros(1)}, [CountingClient(0)], 3, 1.0, 0.5, 0)
