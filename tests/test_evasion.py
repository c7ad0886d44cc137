"""The adversary's update shapes (fmlbd.evasion) do what their docstrings say."""
import pytest
import torch

from fmlbd.aggregation import Median, MultiKrum, NormClip
from fmlbd.functional import flatten
from fmlbd.evasion import shape_update


def benign_updates(n=3, d=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"w": torch.randn(d, generator=g) * 0.1 + 0.05, "b": torch.randn(3, generator=g) * 0.1} for _ in range(n)]


def test_no_shape_is_the_update_itself():
    delta = benign_updates(1)[0]
    assert shape_update(delta, benign_updates()) is delta


def test_norm_cap_brings_the_update_under_the_benign_median_norm():
    benign = benign_updates()
    big = {k: 30 * v for k, v in benign_updates(1, seed=9)[0].items()}
    shaped = shape_update(big, benign, norm_cap=0.95)
    median = float(flatten(benign).norm(dim=1).median())
    assert float(flatten([shaped]).norm()) == pytest.approx(0.95 * median, rel=1e-5)
    direction = torch.nn.functional.cosine_similarity(flatten([shaped]), flatten([big]))
    assert float(direction) == pytest.approx(1.0, abs=1e-6)  # scaled, not turned
    small = {k: 0.01 * v for k, v in big.items()}
    assert torch.equal(flatten([shape_update(small, benign, norm_cap=0.95)]), flatten([small]))


def test_norm_clip_leaves_an_update_under_the_bound_whole():
    benign = benign_updates(30, seed=1)
    rule = NormClip(window=30)
    rule(flatten(benign))  # the rule has seen 30 benign updates
    shaped = shape_update({k: 30 * v for k, v in benign[0].items()}, benign[:3], norm_cap=0.5)
    _, weights = rule(flatten([shaped] + benign[:2]))
    assert float(weights[0]) == pytest.approx(1 / 3)  # not shrunk


def test_disguise_keeps_every_coordinate_within_z_std_of_the_benign_mean():
    benign = benign_updates(5)
    refs = flatten(benign)
    shaped = flatten([shape_update({k: 40 * v for k, v in benign_updates(1, seed=3)[0].items()}, benign,
                                   disguise_z=1.0)])[0]
    assert bool(((shaped - refs.mean(0)).abs() <= refs.std(0) + 1e-6).all())


def test_a_disguised_update_is_not_the_one_multi_krum_drops():
    benign = benign_updates(3, seed=4)
    boosted = {k: 20 * v for k, v in benign_updates(1, seed=5)[0].items()}
    _, plain = MultiKrum(byzantine=1)(flatten([boosted] + benign[:2]))
    assert float(plain[0]) == 0  # the boosted update is dropped
    disguised = shape_update(boosted, benign, disguise_z=0.5)
    _, weights = MultiKrum(byzantine=1)(flatten([disguised] + benign[:2]))
    assert float(weights[0]) > 0
    step, _ = Median()(flatten([disguised] + benign[:2]))
    assert step.shape == flatten(benign[:1])[0].shape


def test_shaping_needs_two_benign_updates():
    with pytest.raises(ValueError, match="at least 2 benign updates"):
        shape_update(benign_updates(1)[0], benign_updates(1), norm_cap=1.0)
