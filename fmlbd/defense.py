"""Local defense: a matching-network classifier that each user runs on its own device.

The user keeps, in memory, the features of its own labelled support set computed by
the shared feature extractor (the global model without its linear head), and
classifies a query by attention over the cosine similarity of the query's features
to the stored support features. The shared decision layer is never used, and
nothing but the global model and the user's own images is ever read: the API has
no way to receive other clients' updates.

Sharing only a feature extractor trained with :func:`fmlbd.matching.matching_loss` (no decision layer
anywhere, :func:`fmlbd.experiments.defense.defended_config`) lowers the backdoor of the protocol's one-shot attack but does not
remove it, and an adversary that keeps keyed images out of its support sets plants it fully; on a
head-trained model the backdoor lives in the features and the matching network follows it (notebook 05).

Attention kernels: :mod:`fmlbd.attention` (default ``defense.kernel``, ``defense.temperature``);
notebook 05's ablation compares them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Attention
from .functional import Params, call, support_buffers


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
        if len(support_x) == 0 or len(support_x) != len(support_y):
            raise ValueError(f"the support set needs at least one image and one label per image "
                             f"(got {len(support_x)} images, {len(support_y)} labels)")
        self.model, self.params, self.attention = model, global_params, attention
        self.ways = int(support_y.max()) + 1
        self.support_y = support_y
        self.buffers = support_buffers(model, global_params, support_x)
        with torch.no_grad():
            self.support_features = F.normalize(self._features(support_x), dim=1)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return call(self.model, self.params, self.buffers, x, train=False, features=True)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` features of images ``x`` (not normalised), under the support set's statistics."""
        return self._features(x)

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
