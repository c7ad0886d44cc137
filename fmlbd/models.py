"""The standard 4-block convolutional few-shot network (Vinyals et al.; Finn et al.)."""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class EpisodeBatchNorm(nn.BatchNorm2d):
    """Batch norm whose eval-mode statistics are those of the last train-mode batch.

    Train mode normalises with the batch's own statistics (as usual in
    meta-learning) and stores them. Eval mode normalises with the stored ones.
    At meta-test the support set is passed in train mode, then queries in eval
    mode, so each query is classified on its own (non-transductive): a query's
    prediction never depends on the other queries in its batch.

    ``support_size = n`` (see :func:`support_statistics`): train mode normalises the whole
    batch with the statistics of its first ``n`` rows, so support and queries pass together
    and the queries' normalisation stays a differentiable function of the support (the
    eval-mode path reads stored statistics, which carry no gradient).
    """

    support_size: int | None = None

    def __init__(self, channels: int):
        super().__init__(channels, momentum=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        if not self.support_size:
            # one pass computes the output and the batch's statistics (mean, 1 / sqrt(biased var + eps))
            out, mean, invstd = torch.native_batch_norm(x, self.weight, self.bias, None, None, True, 0.0, self.eps)
            self._store(mean, invstd.detach().pow(-2) - self.eps)
            return out
        stats = x[:self.support_size]
        mean, var = stats.mean((0, 2, 3)), stats.var((0, 2, 3), unbiased=False)
        self._store(mean, var)
        scale = self.weight * torch.rsqrt(var + self.eps)
        return x * scale[:, None, None] + (self.bias - mean * scale)[:, None, None]

    @torch.no_grad()
    def _store(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        self.running_mean.copy_(mean)
        self.running_var.copy_(var)


@contextmanager
def support_statistics(model: nn.Module, support_size: int):
    """Within the block, every :class:`EpisodeBatchNorm` of ``model`` in train mode normalises
    its batch ``[support_size + Q, ...]`` with the statistics of the first ``support_size``
    rows: the same values as the support in train mode followed by the queries in eval mode,
    with gradients that also flow through the support statistics."""
    layers = [m for m in model.modules() if isinstance(m, EpisodeBatchNorm)]
    for m in layers:
        m.support_size = support_size
    try:
        yield
    finally:
        for m in layers:
            m.support_size = None


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d(2)``; without gradients (evaluation) computed from strided views, which gives
    the same values several times faster on a CPU, where max_pool2d's kernel is slow."""

    def __init__(self):
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return super().forward(x)
        h, w = x.shape[-2] // 2, x.shape[-1] // 2
        rows = torch.maximum(x[..., 0:2 * h:2, :2 * w], x[..., 1:2 * h:2, :2 * w])
        return torch.maximum(rows[..., 0::2], rows[..., 1::2])


def conv_block(in_channels: int, filters: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, filters, 3, padding=1),
        EpisodeBatchNorm(filters),
        nn.ReLU(),
        MaxPool2d(),
    )


class ConvNet(nn.Module):
    """4 x [conv 3x3, batch norm, ReLU, 2x2 max-pool] feature extractor + linear N-way head.

    Input ``[B, channels, S, S]`` float in [0, 1]; ``forward(x, features_only=True)`` -> ``[B, D]`` with
    ``D = filters * (S // 16)**2`` (64 for Omniglot 28x28, 800 for mini-ImageNet 84x84
    with 32 filters); ``forward`` -> logits ``[B, ways]``.
    """

    def __init__(self, in_channels: int = 1, filters: int = 64, ways: int = 5, image_size: int = 28):
        super().__init__()
        self.encoder = nn.Sequential(
            conv_block(in_channels, filters), *(conv_block(filters, filters) for _ in range(3)), nn.Flatten()
        )
        self.feature_dim = filters * (image_size // 16) ** 2
        self.head = nn.Linear(self.feature_dim, ways)

    def forward(self, x: torch.Tensor, features_only: bool = False) -> torch.Tensor:
        z = self.encoder(x)
        return z if features_only else self.head(z)
