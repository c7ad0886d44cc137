"""Training and evaluation on another torch device: the CPU's results stay as they are, a GPU's
agree with them up to floating-point order, and a device this machine lacks fails before any work."""
from __future__ import annotations

import pytest
import torch

from fmlbd import pipeline
from fmlbd.builders import check_device
from fmlbd.errors import ConfigError
from tests.helpers import smoke


def test_a_device_is_refused_exactly_when_this_machine_cannot_use_it():
    assert check_device("cpu") == torch.device("cpu")
    for name, usable in (("cuda", torch.cuda.is_available()), ("mps", torch.backends.mps.is_available()),
                         ("cuda:99", torch.cuda.device_count() > 99)):
        if usable:
            assert check_device(name).type == name.partition(":")[0]
        else:
            with pytest.raises(ConfigError, match=f"device='{name}': this machine's torch .* cannot use it; use --device cpu"):
                check_device(name)


def test_a_gpu_model_is_cached_apart_from_the_cpu_model(omniglot_root, tmp_path):
    cpu, gpu = smoke(omniglot_root, tmp_path), smoke(omniglot_root, tmp_path, device="cuda")
    scenario = pipeline.build_scenario(cpu)
    assert pipeline.pretrain_path(cpu, scenario) != pipeline.pretrain_path(gpu, scenario)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_training_agrees_with_the_cpu_up_to_rounding(omniglot_root, tmp_path):
    cpu = pipeline.pretrain(smoke(omniglot_root, tmp_path / "cpu"), progress=False)
    gpu = pipeline.pretrain(smoke(omniglot_root, tmp_path / "gpu", device="cuda"), progress=False)
    for name, value in cpu.params.items():
        other = gpu.params[name]
        assert other.device.type == "cuda"
        assert torch.allclose(value, other.cpu(), rtol=1e-3, atol=1e-4), name
