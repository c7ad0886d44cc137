"""The buffered server's dealings with its nodes (fmlbd.flower.coordinator), without Flower: what it
refuses and why, whom it trusts for identity and staleness, when it drops a node and when it gives up.
The same rules on Flower's Simulation Engine: tests/test_flower.py."""
from __future__ import annotations

import pytest
import torch

from fmlbd.federated import Server
from fmlbd.flower.coordinator import MAX_FAILURES, Coordinator, update_problem

MODEL = {"w": torch.zeros(2, 3), "b": torch.zeros(3)}
NODES = [11, 12, 13, 14]


def good(scale: float = 1.0) -> dict:
    return {"w": torch.full((2, 3), scale), "b": torch.full((3,), scale)}


def about(client: int, version: int = 0, poisoned: bool = False, silent: bool = False) -> dict:
    return {"client": client, "base_version": version, "poisoned": poisoned, "silent": silent}


def coordinator(buffer_size: int = 3, log=None) -> Coordinator:
    lines = [] if log is None else log
    c = Coordinator(Server(MODEL, buffer_size, 1.0), NODES, len(NODES), max_norm=100.0, reply_timeout=10.0,
                    log=lines.append)
    for i, node in enumerate(c.take()):
        c.sent(f"m{node}", node, now=0.0)
    return c


def reply(c: Coordinator, node: int, info, update=None, now: float = 1.0):
    return c.replied(f"m{node}", info, lambda: good() if update is None else update, now)


@pytest.mark.parametrize("delta, fragment", [
    (good() | {"w": torch.full((2, 3), float("nan"))}, "w has non-finite values"),
    (good() | {"b": torch.tensor([float("inf"), 0.0, 0.0])}, "b has non-finite values"),
    (good(1e30), "above the bound 100"),
    (good() | {"w": torch.zeros(3, 2)}, "w has shape (3, 2), the model's is (2, 3)"),
    (good() | {"w": torch.zeros(2, 3, dtype=torch.float64)}, "w has dtype torch.float64"),
    (good() | {"b": torch.zeros(3, dtype=torch.int64)}, "b has dtype torch.int64"),
    ({"w": torch.zeros(2, 3)}, "missing ['b']"),
    (good() | {"x": torch.zeros(1)}, "unexpected ['x']"),
    (good() | {"w": [[0.0] * 3] * 2}, "w is a list, not a tensor"),
    ([torch.zeros(2, 3), torch.zeros(3)], "the update is a list, not named tensors"),
    (None, "the update is a NoneType"),
])
def test_an_update_is_refused_with_its_reason(delta, fragment):
    problem = update_problem(delta, MODEL, max_norm=100.0)
    assert problem is not None and fragment in problem, problem


def test_an_update_at_the_bound_passes_and_just_above_it_does_not():
    delta = {"w": torch.zeros(2, 3), "b": torch.tensor([3.0, 4.0, 0.0])}  # L2 norm 5
    assert update_problem(delta, MODEL, max_norm=5.0) is None
    assert "above the bound" in update_problem(delta, MODEL, max_norm=4.999)


def test_a_refused_update_counts_as_silence_and_the_round_waits_for_the_next_arrival():
    lines = []
    c = coordinator(log=lines)
    assert reply(c, 11, about(0)) is None and reply(c, 12, about(1)) is None
    assert reply(c, 13, about(2), good() | {"w": torch.full((2, 3), float("nan"))}) is None  # refused
    assert c.server.version == 0 and c.take() == []  # 14 is still working: nothing to send yet
    record = reply(c, 14, about(3))
    assert record.round == 1 and record.clients == (0, 1, 3)
    assert sorted(c.take()) == [11, 12, 13, 14]  # the refused node gets work again with the others
    assert c.rejected == [{"round": 1, "node": 13, "client": 2, "reason": "update refused: w has non-finite values"}]
    assert lines == ["round 1: client 2 (node 13): update refused: w has non-finite values"]
    assert torch.equal(c.server.params["w"], torch.ones(2, 3))  # the mean of three good updates


def test_identity_comes_from_the_node_not_from_the_reply():
    c = coordinator()
    reply(c, 11, about(0))
    reply(c, 12, about(0))  # another node claims client 0
    reply(c, 13, about(7))  # out of range
    reply(c, 14, about(3))
    reasons = [r["reason"] for r in c.rejected]
    assert reasons == ["update refused: claims client id 0, already node 11's",
                       "update refused: claims client id 7: the run has clients 0..3"]
    for node in c.take():  # nothing in flight and two waiting: they get work at once
        c.sent(f"m{node}", node, now=2.0)
    assert reply(c, 12, about(1)).clients == (0, 3, 1)  # round 1
    reply(c, 13, about(2))  # in the buffer for round 2
    assert c.client_of == {11: 0, 14: 3, 12: 1, 13: 2}
    for node in c.take():
        c.sent(f"m{node}", node, now=3.0)
    reply(c, 14, about(0, version=1))  # client 3 now says it is the adversary
    assert c.rejected[-1]["reason"] == "update refused: claims client id 0, but this node is client 3"


def test_staleness_comes_from_the_version_sent_and_a_lie_about_it_is_refused():
    c = coordinator()
    for node, client in zip(NODES[:3], range(3)):
        reply(c, node, about(client))
    for node in c.take():  # version 1 to the three aggregated nodes; node 14 still has version 0
        c.sent(f"m{node}", node, now=2.0)
    reply(c, 14, about(3, version=1))  # claims the newer version it was never sent
    assert c.rejected[-1]["reason"] == "update refused: claims base version 1, was sent version 0"
    reply(c, 11, about(0, version=1))
    reply(c, 12, about(1, version=1))
    reply(c, 13, about(2, version=1))
    assert [u["staleness"] for u in c.updates if u["round"] == 2] == [0, 0, 0]


@pytest.mark.parametrize("info", [None, {}, about(0) | {"client": "0"}, about(0) | {"silent": "False"},
                                  about(0) | {"poisoned": 1}, about(0) | {"base_version": 0.0},
                                  about(0) | {"client": True}])
def test_a_reply_whose_about_is_missing_or_of_the_wrong_type_is_refused(info):
    c = coordinator()
    reply(c, 11, info)
    assert c.rejected[-1]["reason"].startswith("update refused: unreadable reply"), c.rejected
    assert c.client_of == {}


def test_an_update_that_cannot_be_decoded_is_refused():
    c = coordinator()

    def broken():
        raise ValueError("bad buffer")
    c.replied("m11", about(0), broken, 1.0)
    assert c.rejected[-1]["reason"] == "update refused: unreadable update (ValueError: bad buffer)"


def test_the_poisoned_label_never_changes_the_aggregate():
    models = []
    for labels in ((False, False, False), (True, True, True)):
        c = coordinator()
        for node, client, poisoned in zip(NODES, range(3), labels):
            reply(c, node, about(client, poisoned=poisoned), good(client + 1.0))
        models.append(c.server.params)
    assert all(torch.equal(models[0][k], models[1][k]) for k in MODEL)


def test_a_failing_client_gets_work_again_and_is_dropped_after_failures_in_a_row():
    c = coordinator()
    for attempt in range(MAX_FAILURES - 1):
        c.failed("m11", "Traceback (most recent call last):\n  ...\nRuntimeError: out of memory\n", now=1.0)
        assert c.take() == [11]  # work again at once
        c.sent("m11", 11, now=1.0)
        assert c.rejected[-1]["reason"] == "failed: RuntimeError: out of memory"
    c.failed("m11", "boom", now=1.0)
    assert 11 not in c.alive
    assert c.rejected[-1]["reason"] == f"dropped: failed {MAX_FAILURES} times in a row, last: boom"
    assert c.take() == []
    for node, client in zip(NODES[1:], range(1, 4)):
        reply(c, node, about(client))
    assert c.server.version == 1 and sorted(c.take()) == [12, 13, 14]  # the other three go on


def test_a_success_resets_the_failure_count():
    c = coordinator()
    for _ in range(MAX_FAILURES - 1):
        c.failed("m11", "boom", now=1.0)
        c.sent("m11", *c.take(), now=1.0)
    reply(c, 11, about(0))
    c.take()
    c.sent("m11", 11, now=2.0)  # hypothetical new work
    c.failed("m11", "boom", now=2.0)
    assert 11 in c.alive


def test_a_silent_node_is_dropped_after_the_reply_timeout_and_the_server_gives_up_below_the_buffer():
    c = coordinator()
    c.expire(now=10.0)
    assert c.alive == set(NODES)  # not late yet
    for node, client in zip(NODES[:3], range(3)):
        reply(c, node, about(client), now=10.5)
    c.expire(now=10.5)
    assert 14 not in c.alive and c.rejected[-1]["reason"].startswith("dropped: no reply within 10 s")
    for node in c.take():
        c.sent(f"m{node}", node, now=11.0)
    with pytest.raises(RuntimeError, match="only 2 clients are left, fewer than federation.buffer_size=3"):
        c.expire(now=30.0)
