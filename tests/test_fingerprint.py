"""The reference trace: the same for the same code, another for other training, and float64 only inside."""
import pytest
import torch

from fmlbd.config import with_overrides
from tests import helpers
from fmlbd.fingerprint import TRACE_RTOL, default_dtype, mismatches, reference_trace, trace_difference


@pytest.fixture
def smoke(omniglot_root, tmp_path):
    return helpers.smoke(omniglot_root, tmp_path)


def test_the_same_code_gives_the_same_trace_and_other_training_another(smoke):
    ref = reference_trace(smoke, rounds=2)
    assert set(ref) == set(TRACE_RTOL) and set(ref["trained"]) == set(ref["init"])
    assert mismatches(reference_trace(smoke, rounds=2), ref) == []
    one_step_more = reference_trace(with_overrides(smoke, {"meta.inner_steps": smoke.meta.inner_steps + 1}), rounds=2)
    assert [m.split(":")[0] for m in mismatches(one_step_more, ref)] == ["trained"]
    other_seed = reference_trace(with_overrides(smoke, {"seed": 1}), rounds=2)
    assert [m.split(":")[0] for m in mismatches(other_seed, ref)] == ["init", "trained"]


def test_the_trace_is_computed_in_float64_and_leaves_float32_as_the_default(smoke):
    with pytest.raises(RuntimeError, match="inside"):
        with default_dtype(torch.float64):
            assert torch.ones(1).dtype == torch.float64
            raise RuntimeError("inside")
    reference_trace(smoke, rounds=1)
    assert torch.get_default_dtype() == torch.float32


def test_trace_difference_is_relative_and_names_unmatched_tensors():
    assert trace_difference({"w": 2.0, "head": 0.0}, {"w": 2.0 * (1 + 1e-9), "head": 0.0}) == pytest.approx(1e-9)
    assert trace_difference({"b": 1e-12}, {"b": 0.0}) == 1.0
    with pytest.raises(ValueError, match="extra"):
        trace_difference({"w": 1.0}, {"w": 1.0, "extra": 1.0})
