"""The matching-network objective: train a feature extractor without any decision layer.

Below both :mod:`fmlbd.meta` (which dispatches the "matching" algorithm here) and
:mod:`fmlbd.defense` (which classifies with the same attention at a user's device).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Attention
from .episodes import Episode
from .functional import Params, call, fresh_buffers
from .models import support_statistics


def matching_loss(model: nn.Module, params: Params, support_x: torch.Tensor, support_y: torch.Tensor,
                  query_x: torch.Tensor, query_y: torch.Tensor, attention: Attention) -> torch.Tensor:
    """Negative log-likelihood of the query labels under the matching-network classifier.

    Queries are normalised with the support set's batch statistics, as
    :class:`~fmlbd.defense.MatchingNetworkDefense` does, and the gradient flows through those
    statistics too. support_x ``[S, ch, H, W]``, support_y ``[S]``, query_x ``[Q, ...]``, query_y ``[Q]``.
    """
    if len(support_x) == 0 or len(query_x) == 0:
        raise ValueError("the matching loss needs a non-empty support set and at least one query")
    with support_statistics(model, len(support_x)):
        features = call(model, params, fresh_buffers(model), torch.cat([support_x, query_x]), train=True,
                        features=True)
    support, query = F.normalize(features[:len(support_x)], dim=1), F.normalize(features[len(support_x):], dim=1)
    probs = attention.class_scores(query @ support.T, support_y, int(support_y.max()) + 1)
    return F.nll_loss(torch.log(probs.clamp_min(1e-8)), query_y)


def matching_step(model: nn.Module, params: Params, episode: Episode, cfg, rng=None) -> Params:
    """``inner_steps`` SGD steps (``inner_lr``) on the matching-network loss of one episode
    (softmax attention, temperature ``cfg.matching_temperature``), then a Reptile
    interpolation with ``meta_lr``. Trains the feature extractor only; the head stays as is.
    ``cfg``: :class:`~fmlbd.config.MetaConfig`; ``rng`` is unused (full-batch steps)."""
    attention = Attention("softmax", cfg.matching_temperature)
    adapted = {k: v.detach() for k, v in params.items()}
    for _ in range(cfg.inner_steps):
        live = {k: v.requires_grad_() for k, v in adapted.items()}
        loss = matching_loss(model, live, episode.support_x, episode.support_y, episode.query_x, episode.query_y,
                             attention)
        names = [k for k in live if not k.startswith("head.")]
        grads = torch.autograd.grad(loss, [live[k] for k in names])
        adapted = {k: v.detach() for k, v in live.items()} | {
            k: (live[k] - cfg.inner_lr * g).detach() for k, g in zip(names, grads)}
    return {k: v + cfg.meta_lr * (adapted[k] - v) for k, v in params.items()}
