"""The shipped quick-profile models are what the current code trains, and training still learns."""
import pytest

from fmlbd.builders import build_scenario
from fmlbd.config import config_from_dict, load_config, with_overrides
from fmlbd.experiments.defense import defended_config
from fmlbd.experiments.server import RULES, rule_config
from fmlbd.fingerprint import mismatches, reference_trace
from fmlbd.pipeline import pretrain
from fmlbd.shipped import SHIPPED, SHIPPED_SUMS, check_shipped, file_sha256, model_key, shipped_name
from fmlbd.results import load_torch
from fmlbd.workers import missing_models

SHIPPED_FILES = sorted(SHIPPED.glob("*.pt"))


def key(path) -> str:
    """The config's key at the end of a shipped model's name."""
    return path.stem.rpartition("-")[2]


def test_the_quick_profile_ships_the_series_models(omniglot_root, tmp_path):
    cfg = load_config("quick", {"data.root": str(omniglot_root), "results_dir": str(tmp_path)})
    configs = (cfg, defended_config(cfg), *(rule_config(cfg, rule) for rule in RULES))
    wanted = {model_key(c, build_scenario(c, case)) for c in configs for case in ("a", "b", "c")}
    assert wanted == {key(p) for p in SHIPPED_FILES} and len(SHIPPED_FILES) == len(wanted)
    assert missing_models(configs, ("a", "b", "c")) == {}  # nothing to train
    retrain = with_overrides(cfg, {"shipped_models": False})
    assert len(missing_models((retrain,), ("a", "b", "c"))) == 2  # (a)/(c) share a model


def test_the_manifest_lists_the_sha256_of_every_shipped_model():
    listed = dict(line.split()[::-1] for line in SHIPPED_SUMS.read_text().splitlines())
    assert sorted(listed) == [p.name for p in SHIPPED_FILES]
    for path in SHIPPED_FILES:
        assert listed[path.name] == file_sha256(path)
        check_shipped(path)


@pytest.mark.parametrize("shipped", SHIPPED_FILES, ids=lambda p: p.stem)
def test_a_shipped_model_is_what_the_current_code_trains(shipped, omniglot_root, tmp_path):
    """The current code's reference trace (float64, so the same on every CPU) is the shipped one."""
    saved = load_torch(shipped)
    cfg = with_overrides(config_from_dict(saved["config"]), {"data.root": str(omniglot_root),
                                                             "results_dir": str(tmp_path), "shipped_models": False})
    assert model_key(cfg, build_scenario(cfg)) == key(shipped), "the cache key scheme changed: reship"
    assert shipped.name == shipped_name(saved["config"], key(shipped)), "named for another model"
    assert saved["state"]["version"] == cfg.federation.rounds
    off = mismatches(reference_trace(cfg), saved["trace"])
    assert not off, f"the current code trains another model than the shipped one ({'; '.join(off)}): " \
                    f"run scripts/ship_pretrained.py"


@pytest.mark.slow
def test_benign_training_still_learns(omniglot_root, tmp_path):
    """The quick profile from scratch, 250 rounds: far above chance (1/5) already."""
    cfg = load_config("quick", {"data.root": str(omniglot_root), "results_dir": str(tmp_path),
                                "shipped_models": False, "federation.rounds": 250})
    log = pretrain(cfg, progress=False).log
    assert log["value"].iloc[-1] >= 0.6
