"""Functional meta-learning: Reptile / first-order MAML local training and meta-test fine-tuning.

Models are never mutated: weights travel as ``Params`` dicts (see :mod:`fmlbd.functional`).
One meta-update per algorithm, dispatched by name through :data:`META_STEPS`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .episodes import Episode
from .functional import Params, call, fresh_buffers, support_buffers, zero_head
from .matching import matching_step

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


def reptile_step(model: nn.Module, params: Params, episode: Episode, cfg, rng: np.random.Generator) -> Params:
    """Reptile: ``params + meta_lr * (adapted - params)``, where ``adapted`` is the result of
    ``inner_steps`` optimiser steps on support and query images together."""
    x = torch.cat([episode.support_x, episode.query_x])
    y = torch.cat([episode.support_y, episode.query_y])
    adapted = inner_loop(model, params, x, y, cfg.inner_steps, cfg.inner_lr, cfg.inner_batch, rng,
                         cfg.inner_optimizer, cfg.inner_head_lr)
    return {k: v + cfg.meta_lr * (adapted[k] - v) for k, v in params.items()}


def fomaml_step(model: nn.Module, params: Params, episode: Episode, cfg, rng: np.random.Generator) -> Params:
    """First-order MAML: adapt on the support set, then ``params - meta_lr * grad(query loss at adapted)``."""
    adapted = inner_loop(model, params, episode.support_x, episode.support_y, cfg.inner_steps, cfg.inner_lr,
                         cfg.inner_batch, rng, cfg.inner_optimizer, cfg.inner_head_lr)
    live = {k: v.requires_grad_() for k, v in adapted.items()}
    loss = F.cross_entropy(call(model, live, fresh_buffers(model), episode.query_x, train=True), episode.query_y)
    grads = torch.autograd.grad(loss, list(live.values()))
    return {k: v - cfg.meta_lr * g for (k, v), g in zip(params.items(), grads)}


#: meta.algorithm -> one first-order meta-update ``(model, params, episode, cfg, rng) -> params``
META_STEPS = {"reptile": reptile_step, "fomaml": fomaml_step, "matching": matching_step}


def meta_step(model: nn.Module, params: Params, episode: Episode, cfg, rng: np.random.Generator) -> Params:
    """One meta-update of ``params`` on one episode (``cfg``: :class:`~fmlbd.config.MetaConfig`),
    by :data:`META_STEPS` ``[cfg.algorithm]``.

    cfg.zero_head: the head starts every inner loop at zero and stays zero (the "zeroing
    trick" of Kao et al. 2022): labels are shuffled per episode, so a learned head
    initialisation carries no class information, and from zero the first step builds a
    prototype-like classifier from the support features.
    """
    if cfg.zero_head:
        params = zero_head(params)
    new = META_STEPS[cfg.algorithm](model, params, episode, cfg, rng)
    return zero_head(new) if cfg.zero_head else new


def local_meta_train(model: nn.Module, params: Params, sample: Callable[[np.random.Generator], Episode], cfg,
                     iterations: int, rng: np.random.Generator) -> Params:
    """``iterations`` meta-steps on episodes from ``sample(rng)``; returns the new params."""
    for _ in range(iterations):
        params = meta_step(model, params, sample(rng), cfg, rng)
    return params


def finetune(model: nn.Module, params: Params, support_x: torch.Tensor, support_y: torch.Tensor, steps: int,
             lr: float, optimizer: str = "sgd",
             on_step: Callable[[int, Params], None] | None = None) -> tuple[Params, Params]:
    """Meta-test adaptation: ``steps`` full-batch optimiser steps on the support set.

    Returns ``(params, buffers)`` ready for :func:`predict`.
    """
    tuned = inner_loop(model, params, support_x, support_y, steps, lr, optimizer=optimizer, on_step=on_step)
    return tuned, support_buffers(model, tuned, support_x)
