"""Helpers the test modules share (no tests here): the smoke config, a toy class pool and episode."""
import numpy as np
import torch

from fmlbd.config import load_config
from fmlbd.data import ClassPool
from fmlbd.episodes import Episode


def smoke(omniglot_root, tmp_path, **overrides):
    """The smoke profile (seconds, meaningless numbers) on the minimal Omniglot zips, caching in ``tmp_path``."""
    return load_config("smoke", {"data.root": str(omniglot_root), "results_dir": str(tmp_path), **overrides})


def toy_pool(classes=12, per_class=8, size=6) -> ClassPool:
    """Image (c, i) is filled with the value c*per_class + i, so pixels identify their source."""
    values = torch.arange(classes * per_class, dtype=torch.uint8).view(classes, per_class, 1, 1, 1)
    images = values.expand(classes, per_class, 1, size, size).contiguous()
    return ClassPool(images, tuple(f"c{i}" for i in range(classes)), tuple("g" for _ in range(classes)))


def toy_episode(seed=0, ways=3, shots=4):
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(ways, 1, 28, 28, generator=g)
    x = prototypes.repeat_interleave(shots, 0) + 0.05 * torch.randn(ways * shots, 1, 28, 28, generator=g)
    y = torch.arange(ways).repeat_interleave(shots)
    idx = np.zeros((ways, shots), int)
    return Episode(x, y, x.clone(), y.clone(), tuple(range(ways)), idx, idx)
