"""How an adversary shapes its poisoned update to pass a server-side rule (:mod:`fmlbd.aggregation`).

The adversary cannot see the other clients' updates, but it holds benign data of its own: from the
global model it was sent it computes a few benign updates as the honest client it pretends to be,
and uses them as its picture of a benign update. Two shapes, applied to the (boosted) poisoned delta:

- norm cap: scale it to at most ``cap`` times the median norm of those benign updates, to pass a
  norm bound fitted to benign updates (norm clipping, FLAME's clip) unscaled;
- disguise (in the spirit of "A little is enough", Baruch et al. 2019): hold each coordinate within
  ``z`` standard deviations of the benign updates' mean, so that the update sits inside the benign
  spread that the coordinate-wise median and the distance-based rules (Multi-Krum, FLAME) accept.
"""
from __future__ import annotations

from .functional import Params, flatten, unflatten


def shape_update(delta: Params, benign: list[Params], norm_cap: float | None = None,
                 disguise_z: float | None = None) -> Params:
    """``delta`` held within ``disguise_z`` standard deviations of the ``benign`` updates' mean, coordinate
    by coordinate (if given), then scaled to at most ``norm_cap`` x their median L2 norm (if given)."""
    if norm_cap is None and disguise_z is None:
        return delta
    if len(benign) < 2:
        raise ValueError(f"shaping an update needs at least 2 benign updates to compare with, got {len(benign)}")
    refs = flatten(benign)
    flat = flatten([delta])[0]
    if disguise_z is not None:
        mean, spread = refs.mean(0), disguise_z * refs.std(0)
        flat = mean + (flat - mean).clamp(-spread, spread)
    if norm_cap is not None:
        bound = norm_cap * float(refs.norm(dim=1).median())
        flat = flat * min(1.0, bound / max(float(flat.norm()), 1e-12))
    return {k: v.clone() for k, v in unflatten(flat, delta).items()}
