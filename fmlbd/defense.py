"""Local defense: a matching-network classifier that each user runs on its own device.

The user keeps, in memory, the features of its own labelled support set computed by
the shared feature extractor (the global model without its linear head), and
classifies a query by attention over the cosine similarity of the query's features
to the stored support features. The shared decision layer is never used, and
nothing but the global model and the user's own images is ever read: the API has
no way to receive other clients' updates.

Sharing only a feature extractor trained with :func:`matching_loss` (no decision layer anywhere,
``experiments.defended_config``) lowers the backdoor of the protocol's one-shot attack but does not
remove it, and an adversary that keeps keyed images out of its support sets plants it fully; on a
head-trained model the backdoor lives in the features and the matching network follows it (notebook 05).

Attention kernels (``Attention.kernel``), with ``s_j = cos(f(query), f(support_j))``:

- ``"softmax"``: ``p(c) = sum_{j: y_j = c} softmax_j(s_j / T)`` (Vinyals et al.).
- ``"class_max"``: ``p(c) = softmax_c(max_{j: y_j = c} s_j / T)`` (customised: a class
  is as close as its *closest* stored example, so one support image that matches a
  query cannot be outvoted by many dissimilar ones).
- ``"topk"``: like softmax, over each query's ``k`` most similar support images only.

Default: ``softmax`` with T = 0.1. With one support image per class every kernel picks the
most similar one, so they coincide at 1-shot. At 5-shot, on the defended federation right after
the attack (notebook 05), this one had the best main-task accuracy in case (b) and was within 0.001
of the best in (a); ``class_max`` left 0.01-0.02 less backdoor accuracy for 0.003-0.006 less main
task, and no kernel removed the backdoor.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .meta import Params, call, support_buffers

KERNELS = ("softmax", "class_max", "topk")


@dataclass(frozen=True)
class Attention:
    kernel: str = "softmax"
    temperature: float = 0.1     #: T: similarities are divided by T before the softmax
    k: int = 3                   #: support images attended by "topk"

    def __post_init__(self):
        if self.kernel not in KERNELS:
            raise ValueError(f"unknown attention kernel {self.kernel!r}; choose one of {KERNELS}")
        if self.temperature <= 0 or self.k < 1:
            raise ValueError("temperature must be > 0 and k >= 1")

    def class_scores(self, similarity: torch.Tensor, support_y: torch.Tensor, ways: int) -> torch.Tensor:
        """``[Q, ways]`` class probabilities from ``[Q, S]`` cosine similarities."""
        onehot = F.one_hot(support_y, ways).to(similarity.dtype)             # [S, ways]
        logits = similarity / self.temperature
        if self.kernel == "class_max":
            masked = logits[:, :, None].masked_fill(onehot[None] == 0, float("-inf"))  # [Q, S, ways]
            return masked.amax(1).softmax(1)
        if self.kernel == "topk":
            k = min(self.k, similarity.shape[1])
            kth = logits.topk(k, dim=1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        return logits.softmax(1) @ onehot


class MatchingNetworkDefense:
    """A user's local classifier: the global feature extractor plus its own support set.

    model, global_params: the shared network and the global weights the user downloaded.
    support_x ``[S, ch, H, W]``, support_y ``[S]`` in ``0..ways-1``: the user's own labelled images.
    The support features ``[S, D]`` (L2-normalised) are computed once and kept in memory.
    """

    def __init__(self, model: nn.Module, global_params: Params, support_x: torch.Tensor, support_y: torch.Tensor,
                 attention: Attention = Attention()):
        if not isinstance(global_params, dict) or set(global_params) != {k for k, _ in model.named_parameters()}:
            raise TypeError("global_params must be the full global model's parameter dict")
        self.model, self.params, self.attention = model, global_params, attention
        self.ways = int(support_y.max()) + 1
        self.support_y = support_y
        self.buffers = support_buffers(model, global_params, support_x)
        with torch.no_grad():
            self.support_features = F.normalize(self._features(support_x), dim=1)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return call(self.model, self.params, self.buffers, x, train=False, features=True)

    @torch.no_grad()
    def similarity(self, query_x: torch.Tensor) -> torch.Tensor:
        """``[Q, S]`` cosine similarity of each query's features to each stored support feature."""
        return F.normalize(self._features(query_x), dim=1) @ self.support_features.T

    def probabilities(self, query_x: torch.Tensor) -> torch.Tensor:
        """``[Q, ways]`` class probabilities of each query (classified independently)."""
        return self.attention.class_scores(self.similarity(query_x), self.support_y, self.ways)

    def predict(self, query_x: torch.Tensor) -> torch.Tensor:
        return self.probabilities(query_x).argmax(1)

    def predict_each(self, query_x: torch.Tensor, attentions) -> list[torch.Tensor]:
        """Predicted labels ``[Q]`` under each of ``attentions``, from one pass of the features."""
        similarity = self.similarity(query_x)
        return [a.class_scores(similarity, self.support_y, self.ways).argmax(1) for a in attentions]


def matching_loss(model: nn.Module, params: Params, support_x: torch.Tensor, support_y: torch.Tensor,
                  query_x: torch.Tensor, query_y: torch.Tensor, attention: Attention) -> torch.Tensor:
    """Negative log-likelihood of the query labels under the matching-network classifier
    (for training the shared feature extractor without any decision layer). Queries are
    normalised with the support set's batch statistics, as :class:`MatchingNetworkDefense`
    does, and the gradient flows through those statistics too."""
    from .meta import fresh_buffers
    from .models import support_statistics

    with support_statistics(model, len(support_x)):
        features = call(model, params, fresh_buffers(model), torch.cat([support_x, query_x]), train=True,
                        features=True)
    support, query = F.normalize(features[:len(support_x)], dim=1), F.normalize(features[len(support_x):], dim=1)
    probs = attention.class_scores(query @ support.T, support_y, int(support_y.max()) + 1)
    return F.nll_loss(torch.log(probs.clamp_min(1e-8)), query_y)
