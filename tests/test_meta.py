import types

import numpy as np
import torch

from fmlbd.functional import call, fresh_buffers, get_params, predict, support_buffers
from fmlbd.meta import inner_loop, meta_step
from fmlbd.models import ConvNet
from tests.helpers import toy_episode


def meta_cfg(**kw):
    base = dict(algorithm="reptile", inner_steps=3, inner_lr=0.1, inner_batch=0, meta_lr=1.0, inner_optimizer="sgd",
                zero_head=False, inner_head_lr=None)
    return types.SimpleNamespace(**{**base, **kw})


def test_inner_loop_learns_and_leaves_model_untouched():
    torch.manual_seed(0)
    model = ConvNet(1, 8, 3, 28)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = get_params(model)
    ep = toy_episode()
    loss = lambda p: torch.nn.functional.cross_entropy(call(model, p, fresh_buffers(model), ep.support_x, train=True),
                                                       ep.support_y).item()
    for optimizer, lr in (("sgd", 0.1), ("adam", 0.01)):
        adapted = inner_loop(model, params, ep.support_x, ep.support_y, 10, lr, optimizer=optimizer)
        assert loss(adapted) < 0.5 * loss(params)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_reptile_step_interpolates_towards_adapted_weights():
    torch.manual_seed(0)
    model = ConvNet(1, 8, 3, 28)
    params = get_params(model)
    ep = toy_episode()
    rng = lambda: np.random.default_rng(0)
    zero = meta_step(model, params, ep, meta_cfg(meta_lr=0.0), rng())
    full = meta_step(model, params, ep, meta_cfg(meta_lr=1.0), rng())
    half = meta_step(model, params, ep, meta_cfg(meta_lr=0.5), rng())
    for k in params:
        assert torch.equal(zero[k], params[k])
        assert torch.allclose(half[k], 0.5 * (params[k] + full[k]), atol=1e-6)


def test_fomaml_step_changes_params():
    torch.manual_seed(0)
    model = ConvNet(1, 8, 3, 28)
    params = get_params(model)
    new = meta_step(model, params, toy_episode(), meta_cfg(algorithm="fomaml"), np.random.default_rng(0))
    assert any(not torch.equal(new[k], params[k]) for k in params)


def test_queries_are_classified_independently_of_each_other():
    torch.manual_seed(0)
    model = ConvNet(1, 8, 3, 28)
    params = get_params(model)
    ep = toy_episode()
    buffers = support_buffers(model, params, ep.support_x)
    together = predict(model, params, buffers, ep.query_x)
    alone = torch.cat([predict(model, params, buffers, ep.query_x[i:i + 1]) for i in range(len(ep.query_x))])
    assert torch.equal(together, alone)
    odd_batch = torch.cat([ep.query_x[:1], torch.ones(5, 1, 28, 28)])
    assert predict(model, params, buffers, odd_batch)[0] == together[0]


def test_matching_objective_trains_features_and_leaves_head():
    from fmlbd.attention import Attention
    from fmlbd.matching import matching_loss

    torch.manual_seed(0)
    model = ConvNet(1, 8, 3, 28)
    params = get_params(model)
    ep = toy_episode()
    cfg = meta_cfg(algorithm="matching", inner_steps=5, inner_lr=0.1, matching_temperature=0.1)
    new = meta_step(model, params, ep, cfg, np.random.default_rng(0))
    assert torch.equal(new["head.weight"], params["head.weight"])
    loss = lambda p: matching_loss(model, p, ep.support_x, ep.support_y, ep.query_x, ep.query_y,
                                   Attention("softmax", 0.1)).item()
    assert loss(new) < loss(params)


def test_zero_head_keeps_the_shared_head_at_zero():
    torch.manual_seed(0)
    model = ConvNet(1, 8, 3, 28)
    params = get_params(model)
    new = meta_step(model, params, toy_episode(), meta_cfg(zero_head=True), np.random.default_rng(0))
    assert not new["head.weight"].any() and not new["head.bias"].any()
    assert not torch.equal(new["encoder.0.0.weight"], params["encoder.0.0.weight"])
