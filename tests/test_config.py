import subprocess
import sys

import pytest

from fmlbd.config import ConfigError, PROFILES, config_from_dict, load_config


def test_overrides_are_typed():
    cfg = load_config("quick", {"meta.inner_lr": "0.05", "eval.shots": "5", "data.test_alphabets": "Greek,Latin"})
    assert cfg.meta.inner_lr == 0.05 and cfg.eval.shots == 5
    assert cfg.data.test_alphabets == ("Greek", "Latin")
    assert PROFILES["quick"].meta.inner_lr != 0.05  # profiles are never mutated


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match="unknown config key 'meta.inner_lrr'.*meta.inner_lr"):
        load_config("quick", {"meta.inner_lrr": 0.1})


def test_bad_value_and_profile_are_errors():
    with pytest.raises(ConfigError, match="eval.shots must be int"):
        load_config("quick", {"eval.shots": "five"})
    with pytest.raises(ConfigError, match="unknown profile"):
        load_config("huge")


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_config_round_trips_through_dict(profile):
    cfg = load_config(profile)
    assert config_from_dict(cfg.to_dict()) == cfg


def test_cli_reports_config_errors_with_exit_code_2():
    out = subprocess.run([sys.executable, "-m", "fmlbd", "config", "--set", "federation.buffer=2"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "did you mean federation.buffer_size" in out.stderr
