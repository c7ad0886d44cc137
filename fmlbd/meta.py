"""Functional meta-learning: Reptile / first-order MAML local training and meta-test fine-tuning.

Models are never mutated: weights travel as ``Params`` dicts (name -> tensor)
and every forward pass is ``torch.func.functional_call``. Batch-norm statistics
live in a separate ``buffers`` dict (see :class:`~fmlbd.models.EpisodeBatchNorm`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .episodes import Episode

Params = dict[str, torch.Tensor]


def get_params(model: nn.Module) -> Params:
    """Detached copies of the model's parameters."""
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def fresh_buffers(model: nn.Module) -> Params:
    """Private copies of the model's buffers (batch-norm statistics)."""
    return {k: v.clone() for k, v in model.named_buffers()}


def call(model: nn.Module, params: Params, buffers: Params, x: torch.Tensor, *, train: bool,
         features: bool = False) -> torch.Tensor:
    """Logits ``[B, ways]`` (or features ``[B, D]``) of ``x`` under ``params``.

    train=True normalises with the batch's statistics and stores them in ``buffers``;
    train=False normalises with the stored ones.
    """
    model.train(train)
    return functional_call(model, (params, buffers), (x,), {"features_only": features}, strict=True)


ADAM_BETA2, ADAM_EPS = 0.999, 1e-8


def inner_loop(model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float,
               batch_size: int = 0, rng: np.random.Generator | None = None, optimizer: str = "sgd",
               head_lr: float | None = None, on_step: Callable[[int, Params], None] | None = None) -> Params:
    """``steps`` optimiser steps of cross-entropy on ``(x, y)`` from ``params`` (first order).

    optimizer: "sgd" (plain) or "adam" (fresh state, beta1 = 0 as in Reptile: an
    RMS-normalised step of size ~``lr`` per parameter).
    head_lr: learning rate of the linear head ("head.*" params), ``lr`` if None. Labels are
    shuffled in every episode, so the head must be re-fitted within the inner loop; a larger
    head rate lets it do so in a few steps.
    batch_size 0 uses the whole set each step; otherwise a random minibatch from ``rng``.
    ``on_step(step, params)`` is called after each step (step counts from 1).
    Returns new detached params; the input dict is not modified.
    """
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"unknown inner optimizer {optimizer!r}; use 'sgd' or 'adam'")
    buffers = fresh_buffers(model)
    params = {k: v.detach() for k, v in params.items()}
    second_moment = {k: torch.zeros_like(v) for k, v in params.items()} if optimizer == "adam" else {}
    rates = {k: head_lr if head_lr is not None and k.startswith("head.") else lr for k in params}
    for step in range(1, steps + 1):
        xb, yb = x, y
        if 0 < batch_size < len(x):
            idx = torch.from_numpy(rng.choice(len(x), size=batch_size, replace=False))
            xb, yb = x[idx], y[idx]
        live = {k: v.requires_grad_() for k, v in params.items()}
        loss = F.cross_entropy(call(model, live, buffers, xb, train=True), yb)
        grads = torch.autograd.grad(loss, list(live.values()))
        if optimizer == "adam":
            correction = 1 - ADAM_BETA2 ** step
            for (k, v), g in zip(live.items(), grads):
                second_moment[k].mul_(ADAM_BETA2).addcmul_(g, g, value=1 - ADAM_BETA2)
            grads = [g / ((second_moment[k] / correction).sqrt() + ADAM_EPS) for k, g in zip(live, grads)]
        params = {k: (v - rates[k] * g).detach() for (k, v), g in zip(live.items(), grads)}
        if on_step is not None:
            on_step(step, params)
    return params


def zero_head(params: Params) -> Params:
    """``params`` with the linear head ("head.*") set to zero."""
    return {k: torch.zeros_like(v) if k.startswith("head.") else v for k, v in params.items()}


def meta_step(model: nn.Module, params: Params, episode: Episode, cfg, rng: np.random.Generator) -> Params:
    """One first-order meta-update of ``params`` on one episode (``cfg``: :class:`~fmlbd.config.MetaConfig`).

    Matching: the matching-network objective instead of a classifier (:func:`matching_step`).
    Reptile: ``params + meta_lr * (adapted - params)`` where ``adapted`` is the result of
    ``inner_steps`` SGD steps on support and query images together.
    FOMAML: adapt on the support set, then ``params - meta_lr * grad(query loss at adapted)``.
    cfg.zero_head: the head starts every inner loop at zero and stays zero (the "zeroing
    trick" of Kao et al. 2022): labels are shuffled per episode, so a learned head
    initialisation carries no class information, and from zero the first step builds a
    prototype-like classifier from the support features.
    """
    if cfg.zero_head:
        params = zero_head(params)
    if cfg.algorithm == "reptile":
        x = torch.cat([episode.support_x, episode.query_x])
        y = torch.cat([episode.support_y, episode.query_y])
        adapted = inner_loop(model, params, x, y, cfg.inner_steps, cfg.inner_lr, cfg.inner_batch, rng,
                             cfg.inner_optimizer, cfg.inner_head_lr)
        new = {k: v + cfg.meta_lr * (adapted[k] - v) for k, v in params.items()}
        return zero_head(new) if cfg.zero_head else new
    if cfg.algorithm == "matching":
        return matching_step(model, params, episode, cfg)
    if cfg.algorithm == "fomaml":
        adapted = inner_loop(model, params, episode.support_x, episode.support_y, cfg.inner_steps, cfg.inner_lr,
                             cfg.inner_batch, rng, cfg.inner_optimizer, cfg.inner_head_lr)
        live = {k: v.requires_grad_() for k, v in adapted.items()}
        loss = F.cross_entropy(call(model, live, fresh_buffers(model), episode.query_x, train=True), episode.query_y)
        grads = torch.autograd.grad(loss, list(live.values()))
        new = {k: v - cfg.meta_lr * g for (k, v), g in zip(params.items(), grads)}
        return zero_head(new) if cfg.zero_head else new
    raise ValueError(f"unknown meta-learning algorithm {cfg.algorithm!r}; use 'reptile', 'fomaml' or 'matching'")


def matching_step(model: nn.Module, params: Params, episode: Episode, cfg) -> Params:
    """``inner_steps`` SGD steps (``inner_lr``) on the matching-network loss of one episode
    (softmax attention, temperature ``cfg.matching_temperature``), then a Reptile
    interpolation with ``meta_lr``. Trains the feature extractor only; the head stays as is."""
    from .defense import Attention, matching_loss

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


def local_meta_train(model: nn.Module, params: Params, draw: Callable[[np.random.Generator], Episode], cfg,
                     iterations: int, rng: np.random.Generator) -> Params:
    """``iterations`` meta-steps on episodes from ``draw(rng)``; returns the new params."""
    for _ in range(iterations):
        params = meta_step(model, params, draw(rng), cfg, rng)
    return params


def support_buffers(model: nn.Module, params: Params, support_x: torch.Tensor) -> Params:
    """Batch-norm statistics of the support set under ``params`` (for non-transductive queries)."""
    buffers = fresh_buffers(model)
    with torch.no_grad():
        call(model, params, buffers, support_x, train=True)
    return buffers


@torch.no_grad()
def predict(model: nn.Module, params: Params, buffers: Params, x: torch.Tensor) -> torch.Tensor:
    """Predicted labels ``[B]``, each query normalised with the support statistics in ``buffers``."""
    return call(model, params, buffers, x, train=False).argmax(1)


def finetune(model: nn.Module, params: Params, support_x: torch.Tensor, support_y: torch.Tensor, steps: int,
             lr: float, optimizer: str = "sgd",
             on_step: Callable[[int, Params], None] | None = None) -> tuple[Params, Params]:
    """Meta-test adaptation: ``steps`` full-batch optimiser steps on the support set.

    Returns ``(params, buffers)`` ready for :func:`predict`.
    """
    tuned = inner_loop(model, params, support_x, support_y, steps, lr, optimizer=optimizer, on_step=on_step)
    return tuned, support_buffers(model, tuned, support_x)
