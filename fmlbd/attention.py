"""Attention kernels of a matching network: class probabilities from cosine similarities.

With ``s_j = cos(f(query), f(support_j))``:

- ``"softmax"``: ``p(c) = sum_{j: y_j = c} softmax_j(s_j / T)`` (Vinyals et al.).
- ``"class_max"``: ``p(c) = softmax_c(max_{j: y_j = c} s_j / T)`` (customised: a class
  is as close as its *closest* stored example, so one support image that matches a
  query cannot be outvoted by many dissimilar ones).
- ``"topk"``: like softmax, over each query's ``k`` most similar support images only.

With one support image per class every kernel picks the most similar one, so they coincide at 1-shot.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .checks import KERNELS


@dataclass(frozen=True)
class Attention:
    kernel: str = "softmax"
    temperature: float = 0.1     #: T: similarities are divided by T before the softmax
    k: int = 3                   #: support images attended by "topk"

    def __post_init__(self):
        if self.kernel not in KERNELS:
            raise ValueError(f"unknown attention kernel {self.kernel!r}; choose one of {KERNELS}")
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)
                and self.temperature > 0):
            raise ValueError(f"attention temperature must be a finite number > 0, not {self.temperature!r}")
        if not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"attention k must be an integer >= 1, not {self.k!r}")

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
