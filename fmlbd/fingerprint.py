"""A fingerprint of what the code trains that every CPU computes alike.

A trained float32 model is no such fingerprint. CPUs and torch builds round differently (their
vectorised kernels, oneDNN's and MKL's instruction sets), already in the initial weights (one
unit in the last place), and federated training amplifies a last-bit difference like a new
draw: after 10 quick-profile rounds the weights' norms of two CPUs differ by 1e-4 relative, a
batch-norm shift's by 1e-1. In float64 the same differences stay near 1e-14 after those rounds,
so a tolerance of :data:`TRACE_RTOL` is met on any CPU while a change of what is computed (one
inner step more, another random stream, a learning rate off by a part per million) is not;
``benchmarks/trace_robustness.py`` measures both.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from .builders import benign_clients, build_model, build_scenario, initial_params, make_federation
from .config import ExperimentConfig
from .functional import Params

#: rounds of benign float64 training behind a reference trace
TRACE_ROUND = 10
#: largest relative difference between two reference traces of the same code, per part
TRACE_RTOL = {"init": 1e-5, "trained": 1e-8}


def trace(params: Params) -> dict[str, float]:
    """L2 norm (float64) of every weight tensor, by name."""
    return {k: float(v.double().norm()) for k, v in sorted(params.items())}


def trace_difference(ours: dict[str, float], theirs: dict[str, float]) -> float:
    """Largest relative difference between two traces of the same tensors (0 where both norms are 0)."""
    if sorted(ours) != sorted(theirs):
        raise ValueError(f"the traces name different tensors: {sorted(set(ours) ^ set(theirs))}")
    return max(abs(ours[k] - theirs[k]) / max(abs(ours[k]), abs(theirs[k]), 1e-300) for k in ours)


@contextmanager
def default_dtype(dtype: torch.dtype):
    """Within the block, new floating-point tensors (weights and images included) are ``dtype``."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def reference_trace(cfg: ExperimentConfig, case: str | None = None,
                    rounds: int = TRACE_ROUND) -> dict[str, dict[str, float]]:
    """The fingerprint of :func:`fmlbd.pipeline.pretrain` ``(cfg, case)``; nothing is cached.

    ``"init"``: :func:`trace` of the float32 initial weights (compare within ``TRACE_RTOL["init"]``).
    ``"trained"``: :func:`trace` after ``rounds`` rounds of the same federation (clients, episodes,
    random streams, aggregation rule) computed in float64 from float64 initial weights drawn by the
    same code (compare within ``TRACE_RTOL["trained"]``).
    """
    scenario = build_scenario(cfg, case)
    init = trace(initial_params(cfg, build_model(cfg, scenario)))
    with default_dtype(torch.float64):
        model = build_model(cfg, scenario)
        with make_federation(cfg, model, initial_params(cfg, model), benign_clients(cfg, scenario)) as federation:
            for _ in range(rounds):
                federation.step()
            return {"init": init, "trained": trace(federation.params)}


def mismatches(ours: dict[str, dict[str, float]], theirs: dict[str, dict[str, float]]) -> list[str]:
    """The parts of two reference traces that differ by more than :data:`TRACE_RTOL` (empty: the same code)."""
    return [f"{part}: relative difference {trace_difference(ours[part], theirs[part]):.1e} > {rtol:.0e}"
            for part, rtol in TRACE_RTOL.items() if trace_difference(ours[part], theirs[part]) > rtol]
