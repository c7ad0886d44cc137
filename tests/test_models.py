import torch
import torch.nn.functional as F

from fmlbd.models import EpisodeBatchNorm, MaxPool2d


def test_fast_max_pool_gives_max_pool2ds_values_odd_sizes_and_ties_included():
    torch.manual_seed(0)
    pool = MaxPool2d()
    for shape in [(5, 64, 28, 28), (5, 8, 7, 7), (2, 3, 3, 3), (3, 2, 5, 6)]:
        x = torch.relu(torch.randn(shape)).round(decimals=1)  # many ties, as on blank background
        with torch.no_grad():
            assert torch.equal(pool(x), F.max_pool2d(x, 2))
        live = x.clone().requires_grad_()
        assert torch.equal(pool(live), F.max_pool2d(x, 2)) and pool(live).grad_fn is not None


def test_batch_norm_stores_the_batchs_mean_and_biased_variance():
    bn = EpisodeBatchNorm(4).train()
    x = torch.randn(6, 4, 5, 5) * 3 + 1
    out = bn(x)
    assert torch.allclose(bn.running_mean, x.mean((0, 2, 3)), atol=1e-6)
    assert torch.allclose(bn.running_var, x.var((0, 2, 3), unbiased=False), rtol=1e-5)
    assert torch.allclose(bn.eval()(x), out, atol=1e-5)
