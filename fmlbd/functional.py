"""Functional forward passes: weights travel as ``Params`` dicts, models are never mutated.

Every forward pass is ``torch.func.functional_call``. Batch-norm statistics live in a
separate ``buffers`` dict (see :class:`~fmlbd.models.EpisodeBatchNorm`): a support set
passed in train mode stores them, queries passed in eval mode read them.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

Params = dict[str, torch.Tensor]


def flatten(deltas: list[Params]) -> torch.Tensor:
    """``[n, D]``: each delta's tensors, in the first delta's key order, as one row."""
    keys = list(deltas[0])
    return torch.stack([torch.cat([d[k].reshape(-1) for k in keys]) for d in deltas])


def unflatten(vector: torch.Tensor, like: Params) -> Params:
    """``vector [D]`` cut back into tensors shaped as ``like``'s (same key order as :func:`flatten`)."""
    out, start = {}, 0
    for k, v in like.items():
        out[k] = vector[start:start + v.numel()].view_as(v)
        start += v.numel()
    return out


def get_params(model: nn.Module) -> Params:
    """Detached copies of the model's parameters."""
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def fresh_buffers(model: nn.Module) -> Params:
    """Private copies of the model's buffers (batch-norm statistics)."""
    return {k: v.clone() for k, v in model.named_buffers()}


def zero_head(params: Params, ways: int | None = None) -> Params:
    """``params`` with the linear head ("head.*") set to zero; with ``ways``, a zero head of ``ways``
    outputs (weight ``[ways, D]``, bias ``[ways]``), e.g. a 20-way head for a model trained on 5-way
    episodes with a zeroed head: its head carries nothing, so any width is the same model."""
    def zero(v: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(v) if ways is None else v.new_zeros((ways, *v.shape[1:]))

    return {k: zero(v) if k.startswith("head.") else v for k, v in params.items()}


def call(model: nn.Module, params: Params, buffers: Params, x: torch.Tensor, *, train: bool,
         features: bool = False) -> torch.Tensor:
    """Logits ``[B, ways]`` (or features ``[B, D]``) of ``x`` under ``params``.

    train=True normalises with the batch's statistics and stores them in ``buffers``;
    train=False normalises with the stored ones.
    """
    model.train(train)
    return functional_call(model, (params, buffers), (x,), {"features_only": features}, strict=True)


def support_buffers(model: nn.Module, params: Params, support_x: torch.Tensor) -> Params:
    """Batch-norm statistics of the support set under ``params`` (for non-transductive queries)."""
    if len(support_x) == 0:
        raise ValueError("the support set is empty: give at least one labelled image per class")
    buffers = fresh_buffers(model)
    with torch.no_grad():
        call(model, params, buffers, support_x, train=True)
    return buffers


@torch.no_grad()
def predict(model: nn.Module, params: Params, buffers: Params, x: torch.Tensor) -> torch.Tensor:
    """Predicted labels ``[B]``, each query normalised with the support statistics in ``buffers``."""
    return call(model, params, buffers, x, train=False).argmax(1)


def all_finite(params: Params) -> bool:
    """True when no weight is NaN or infinite."""
    return all(bool(torch.isfinite(v).all()) for v in params.values())
