"""Server-side aggregation rules on hand-made updates, and a federation that resumes with one."""
import numpy as np
import pytest
import torch
from torch import nn

from fmlbd.aggregation import (AGGREGATIONS, AggregationRule, Flame, GeometricMedian, Mean, Median, MultiKrum,
                               NormClip, TrimmedMean)
from fmlbd.functional import flatten, unflatten
from fmlbd.federated import Federation


def benign_and_boosted(boost: float = 10.0) -> torch.Tensor:
    """Rows: three similar benign updates and one boosted update in another direction."""
    torch.manual_seed(0)
    base = torch.randn(50)
    benign = [base + 0.1 * torch.randn(50) for _ in range(3)]
    return torch.stack(benign + [boost * torch.randn(50)])


def test_mean_of_flattened_deltas_is_the_per_tensor_mean_bit_for_bit():
    torch.manual_seed(1)
    deltas = [{"a": torch.randn(4, 3), "b": torch.randn(7)} for _ in range(3)]
    step, weights = Mean()(flatten(deltas))
    per_tensor = {k: torch.stack([d[k] for d in deltas]).mean(0) for k in deltas[0]}
    assert all(torch.equal(unflatten(step, deltas[0])[k], per_tensor[k]) for k in per_tensor)
    assert torch.allclose(weights, torch.full((3,), 1 / 3))


def test_norm_clipping_shrinks_the_boosted_update_to_the_bound():
    updates = benign_and_boosted()
    step, weights = NormClip(bound=1.0)(updates)
    clipped = updates * weights[:, None] * len(updates)
    assert torch.all(clipped.norm(dim=1) <= 1.0 + 1e-5)
    assert weights[3] < weights[:3].min()
    rule = NormClip(window=4)  # bound: the median norm of the recent updates
    rule(updates)
    assert rule.recent == pytest.approx(updates.norm(dim=1).tolist())


def test_median_and_trimmed_mean_ignore_one_extreme_value_per_coordinate():
    updates = torch.tensor([[0.0, 1.0], [1.0, 2.0], [100.0, -100.0]])
    assert torch.equal(Median()(updates)[0], torch.tensor([1.0, 1.0]))
    assert torch.equal(TrimmedMean(1)(updates)[0], torch.tensor([1.0, 1.0]))
    with pytest.raises(ValueError, match="needs more than 2"):
        TrimmedMean(1)(updates[:2])


def test_multi_krum_and_flame_drop_the_update_unlike_the_others():
    updates = benign_and_boosted()
    for rule in (MultiKrum(byzantine=1), Flame()):
        step, weights = rule(updates)
        assert weights[3] == 0 and bool((weights[:3] > 0).all()), type(rule).__name__
        assert step.norm() < updates[3].norm() / 5


def test_flame_noise_is_seeded_and_resumes_from_its_state():
    updates = benign_and_boosted()
    a, b = Flame(noise=0.01, seed=3), Flame(noise=0.01, seed=3)
    first = a(updates)[0]
    assert torch.equal(first, b(updates)[0])
    state = a.state_dict()
    again = a(updates)[0]
    b.load_state_dict(state)
    assert torch.equal(again, b(updates)[0]) and not torch.equal(first, again)


class ScaledClient:
    """Uploads a seeded random delta; client 0's is ten times larger."""

    def __init__(self, cid):
        self.cid = cid

    def local_update(self, model, params, version, rng):
        scale = 10.0 if self.cid == 0 else 1.0
        return {k: torch.from_numpy(scale * rng.standard_normal(v.shape).astype(np.float32)) for k, v in params.items()}, False


@pytest.mark.parametrize("name", sorted(AGGREGATIONS))
def test_a_federation_aggregating_with_any_rule_resumes_to_the_same_model(name):
    def federation():
        return Federation(nn.Identity(), {"w": torch.zeros(20)}, [ScaledClient(i) for i in range(4)], 3, 1.0, 0.5, 0,
                          aggregation=AGGREGATIONS[name](**({"noise": 0.1} if name == "flame" else {})))

    straight = federation()
    records = [straight.step() for _ in range(6)]
    resumed = federation()
    for _ in range(3):
        resumed.step()
    state = resumed.state_dict()
    resumed = federation()
    resumed.load_state_dict(state)
    assert [resumed.step() for _ in range(3)] == records[3:]
    assert torch.equal(resumed.params["w"], straight.params["w"])
    assert all(len(r.weights) == 3 for r in records)


def test_every_rule_is_registered_once_behind_the_base_class():
    assert all(issubclass(cls, AggregationRule) for cls in AGGREGATIONS.values())
    defined = [c for c in AggregationRule.__subclasses__() if c.__module__ == "fmlbd.aggregation"]
    assert sorted(c.__name__ for c in defined) == sorted(c.__name__ for c in AGGREGATIONS.values())
    with pytest.raises(TypeError, match="abstract"):
        type("NoExplain", (AggregationRule,), {"__call__": lambda self, u: (u.mean(0), None)})()


def test_the_server_takes_only_a_rule_with_the_base_class_interface():
    from fmlbd.federated import Server

    with pytest.raises(TypeError, match="aggregation must be an fmlbd.aggregation.AggregationRule, not function"):
        Server({"w": torch.zeros(2)}, 3, 1.0, aggregation=lambda updates: (updates.mean(0), None))
    assert isinstance(Server({"w": torch.zeros(2)}, 3, 1.0).aggregation, Mean)


def test_the_geometric_median_is_the_point_of_least_summed_distance():
    torch.manual_seed(2)
    updates = torch.randn(5, 3, dtype=torch.float64)
    step, weights = GeometricMedian(iterations=1000)(updates)
    assert torch.allclose(weights @ updates, step) and weights.sum().item() == pytest.approx(1.0)

    def summed(point):
        return float((updates - point).norm(dim=1).sum())
    for direction in torch.eye(3, dtype=torch.float64):  # no move of 0.01 lowers the summed distance
        assert summed(step) <= min(summed(step + 1e-2 * direction), summed(step - 1e-2 * direction))
    assert summed(step) < summed(updates.mean(0)) and summed(step) < summed(updates.median(0).values)
    # collinear points: the geometric median of an odd count is the middle one
    line = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]], dtype=torch.float64)
    assert torch.allclose(GeometricMedian(iterations=1000)(line)[0], line[1], atol=1e-4)


def test_the_geometric_median_barely_moves_for_a_boosted_update():
    updates = benign_and_boosted(boost=10.0)
    rule = GeometricMedian()
    step, weights = rule(updates)
    benign = GeometricMedian()(updates[:3])[0]
    far = GeometricMedian()(benign_and_boosted(boost=1000.0))[0]
    assert weights.argmin() == 3 and 0 < weights[3] < weights[:3].min() / 3
    assert (step - benign).norm() < updates[3].norm() / 10
    assert (far - step).norm() < (step - benign).norm()  # 100 times the boost: the median hardly moves
    assert torch.allclose(rule.explain(updates, step), weights, atol=0.01)  # the weights one step on
    assert GeometricMedian(iterations=0)(updates)[0].allclose(updates.mean(0))  # no iteration: the mean


def test_a_settings_change_of_a_rule_not_in_use_keeps_every_cache_key():
    from fmlbd.cache import cache_key
    from fmlbd.config import load_config

    base = load_config("quick")
    assert cache_key(base, "federation") == cache_key(load_config("quick", {"federation.flame_noise": 0.5,
                                                                             "federation.geomed_iterations": 3}), "federation")
    krum = load_config("quick", {"federation.aggregation": "multi_krum"})
    assert cache_key(krum, "federation") != cache_key(load_config("quick", {"federation.aggregation": "multi_krum",
                                                                            "federation.krum_byzantine": 0}), "federation")
    assert cache_key(krum, "federation") != cache_key(base, "federation")


def test_the_config_builds_the_rule_it_names_and_rejects_a_trim_too_large():
    from fmlbd.builders import aggregation_rule
    from fmlbd.config import ConfigError, load_config

    rule = aggregation_rule(load_config("quick", {"federation.aggregation": "norm_clip", "federation.clip_norm": 2.0}))
    assert isinstance(rule, NormClip) and rule.bound == 2.0
    assert isinstance(aggregation_rule(load_config("quick")), Mean)
    with pytest.raises(ConfigError, match="federation.trim=2 drops 4 of the 3 updates"):
        load_config("quick", {"federation.aggregation": "trimmed_mean", "federation.trim": 2})
    assert load_config("quick", {"federation.trim": 2}).federation.trim == 2  # read only by the trimmed mean
    assert load_config("quick", {"federation.buffer_size": 1}).federation.buffer_size == 1  # Multi-Krum not in use
    rule = aggregation_rule(load_config("quick", {"federation.aggregation": "geometric_median",
                                                  "federation.geomed_iterations": 3}))
    assert rule == GeometricMedian(iterations=3, smoothing=1e-6)
