"""Bad input fails at once, with one line that names the setting or file and the fix; nothing that was
computed is lost or read back half-written."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fmlbd import pipeline, registry
from fmlbd.attention import Attention
from fmlbd.backdoor import BackdoorKey, make_attack_sets
from fmlbd.cache import cached_table
from fmlbd.cli import main
from fmlbd.config import AttackConfig, load_config
from fmlbd.data import ClassPool, load_omniglot
from fmlbd.defense import MatchingNetworkDefense
from fmlbd.episodes import sample_episode
from fmlbd.errors import CacheError, ConfigError, DatasetError
from fmlbd.experiments.attack import one_shot_attack
from fmlbd.federated import Federation
from fmlbd.functional import get_params
from fmlbd.models import ConvNet
from fmlbd.results import atomic_write, load_table, load_torch
from tests.cli_probes import CLI_PROBES


@pytest.mark.parametrize("argv, message", CLI_PROBES, ids=[" ".join(a) for a, _ in CLI_PROBES])
def test_cli_rejects_bad_input_with_one_line_and_exit_code_2(argv, message, omniglot_root, tmp_path, capsys):
    command, rest = argv[0], argv[1:]
    code = main([command, "--profile", "smoke", "--data-root", str(omniglot_root), "--results-dir", str(tmp_path),
                 "--no-progress", *rest])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert not (tmp_path / "cache" / "tables").exists() and not any(tmp_path.glob("cache/pretrain-*/*.pt"))


def test_argparse_errors_are_one_line_too(capsys):
    assert main(["train", "--profile", "huge"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "huge" in err


def test_cli_rejects_a_bad_setting_before_loading_torch():
    code = "import sys; from fmlbd.cli import main; rc = main(['config', '--set', 'meta.inner_lr=nan']); " \
           "print(rc, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.split() == ["2", "False"] and "meta.inner_lr" in out.stderr


def _pool(classes=6, images=20):
    return ClassPool(torch.zeros(classes, images, 1, 28, 28, dtype=torch.uint8), tuple(map(str, range(classes))),
                     ("g",) * classes)


def _model():
    torch.manual_seed(0)
    return ConvNet(1, 4, 3, 28)


LIBRARY_PROBES = [
    ("repeated class ids", lambda: sample_episode(_pool(), [0, 0, 0, 0, 0], 5, 1, 1, np.random.default_rng(0)),
     DatasetError, "repeat a class id"),
    ("key wraps around", lambda: BackdoorKey(row=-100).mask(28, 28), ValueError, "key_row=-100 puts a key"),
    ("key below the image", lambda: BackdoorKey(row=25).mask(28, 28), ValueError, "key_row=25 puts a key"),
    ("key value", lambda: BackdoorKey(value=1.5), ValueError, "key.value must be a finite number >= 0 and <= 1"),
    ("key size", lambda: BackdoorKey(size=0), ValueError, "key.size must be an integer >= 1"),
    ("attention temperature nan", lambda: Attention(temperature=float("nan")), ValueError, "temperature"),
    ("attention kernel", lambda: Attention("max"), ValueError, "unknown attention kernel 'max'"),
    ("attention k", lambda: Attention(k=0), ValueError, "attention k must be an integer >= 1"),
    ("empty support set", lambda: MatchingNetworkDefense(_model(), get_params(_model()), torch.zeros(0, 1, 28, 28),
                                                          torch.zeros(0, dtype=torch.long)), ValueError, "support set"),
    ("no backdoor classes", lambda: make_attack_sets(_pool(), [], BackdoorKey(), 10), ValueError, "backdoor_classes"),
    ("backdoor class outside", lambda: make_attack_sets(_pool(), [99], BackdoorKey(), 10), ValueError,
     "backdoor_classes"),
    ("attack sets without validation images", lambda: make_attack_sets(_pool(), [1], BackdoorKey(), 20), ValueError,
     "attack_train_images must be in 1..19"),
    ("config section", lambda: AttackConfig(draw=-1), ConfigError, "attack.draw must be an integer >= 0"),
    ("bool where an int belongs", lambda: load_config("smoke", {"eval.episodes": True}), ConfigError,
     "eval.episodes must be int, not True"),
    ("unknown experiment", lambda: registry.get("dampen"), ConfigError, "did you mean dampening"),
    ("unknown case", lambda: one_shot_attack(load_config("smoke"), ("d",)), ValueError, "cases must be some of a, b, c"),
    ("reseed a client that does not exist", lambda: Federation(_model(), get_params(_model()), [object()] * 4, 3, 1.0,
                                                               0.5, 0).reseed_client(9, np.random.default_rng()),
     ValueError, "no client 9"),
]


@pytest.mark.parametrize("call, error, message", [p[1:] for p in LIBRARY_PROBES], ids=[p[0] for p in LIBRARY_PROBES])
def test_library_rejects_impossible_arguments(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_training_that_diverges_is_reported_and_never_cached(omniglot_root, tmp_path, monkeypatch):
    cfg = load_config("smoke", {"data.root": str(omniglot_root), "results_dir": str(tmp_path)})
    monkeypatch.setattr(pipeline, "all_finite", lambda params: False)  # rates that diverge are refused up front
    with pytest.raises(pipeline.TrainingDiverged, match="non-finite weights at round 1 .*lower a learning rate"):
        pipeline.pretrain(cfg, progress=False)
    assert not list(tmp_path.glob("cache/pretrain-*/*.pt"))


# --- caches ---------------------------------------------------------------------------------------

def test_an_interrupted_write_leaves_nothing_under_the_final_name(tmp_path):
    target = tmp_path / "table.csv"

    def interrupted(f):
        f.write(b"case,metric,value\na,backdoor")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, interrupted)
    assert list(tmp_path.iterdir()) == []


def test_two_writers_of_one_file_do_not_collide(tmp_path):
    target = tmp_path / "model.pt"

    def outer(f):  # another process writes the same file while this one is writing it
        atomic_write(target, lambda g: g.write(b"second"))
        f.write(b"first")

    atomic_write(target, outer)
    assert target.read_bytes() == b"first" and [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_a_cut_or_orphaned_table_is_never_read_back_as_a_result(tmp_path):
    cfg = load_config("smoke", {"results_dir": str(tmp_path)})
    table = pd.DataFrame({"case": ["a"] * 4, "metric": list("wxyz"), "value": [0.1, 0.2, 0.3, 0.4]})
    calls = []

    def compute():
        calls.append(1)
        return table

    assert cached_table(cfg, "demo", {"k": 1}, compute).equals(table) and len(calls) == 1
    path = next((tmp_path / "cache" / "tables").glob("demo-*.csv"))
    assert cached_table(cfg, "demo", {"k": 1}, compute).equals(table) and len(calls) == 1  # read back
    path.write_bytes(path.read_bytes()[:-9])  # cut in the middle of the last row
    with pytest.raises(CacheError, match=f"{path.name} does not match its .*delete"):
        load_table(path)
    with pytest.warns(UserWarning, match="recomputing"):
        again = cached_table(cfg, "demo", {"k": 1}, compute)
    assert again.equals(table) and len(calls) == 2
    path.with_suffix(".meta.json").unlink()  # the metadata missing
    with pytest.warns(UserWarning, match="cannot read the table or its metadata"):
        cached_table(cfg, "demo", {"k": 1}, compute)
    assert len(calls) == 3 and load_table(path)[0].equals(table)


def test_a_truncated_model_names_the_file_and_the_fix(omniglot_root, tmp_path):
    cfg = load_config("smoke", {"data.root": str(omniglot_root), "results_dir": str(tmp_path)})
    trained = pipeline.pretrain(cfg, progress=False)
    final = trained.path / "final.pt"
    final.write_bytes(final.read_bytes()[:1000])
    with pytest.raises(CacheError, match=f"{final} is unreadable .*delete it \\(rm {final}\\) and rerun"):
        pipeline.pretrain(cfg, progress=False)
    assert main(["train", "--profile", "smoke", "--data-root", str(omniglot_root), "--results-dir", str(tmp_path),
                 "--no-progress"]) == 2


def test_decoded_images_are_rebuilt_when_cut_and_kept_elsewhere_when_the_data_folder_is_read_only(omniglot_root,
                                                                                                  tmp_path):
    data = tmp_path / "data" / "omniglot"
    data.mkdir(parents=True)
    for z in (omniglot_root / "omniglot").glob("*.zip"):
        (data / z.name).symlink_to(z.resolve())
    first = load_omniglot(tmp_path / "data")
    processed = data / "processed" / "minimal-28px.pt"
    processed.write_bytes(processed.read_bytes()[:500])
    with pytest.warns(UserWarning, match="minimal-28px.pt is unreadable"):
        assert torch.equal(load_omniglot(tmp_path / "data").images, first.images)
    # a data folder where nothing can be written (a file stands where the cache folder would go,
    # which fails even for root, who may write to read-only folders)
    processed.unlink()
    processed.parent.rmdir()
    processed.parent.write_text("not a folder")
    pool = load_omniglot(tmp_path / "data", cache_dir=tmp_path / "fallback")
    assert torch.equal(pool.images, first.images) and (tmp_path / "fallback" / "minimal-28px.pt").is_file()
    assert torch.equal(load_omniglot(tmp_path / "data").images, first.images)  # no fallback: kept in memory


# --- interruption ---------------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_stops_the_worker_processes_and_a_rerun_resumes(omniglot_root, tmp_path):
    argv = [sys.executable, "-m", "fmlbd", "attack", "--profile", "smoke", "--data-root", str(omniglot_root),
            "--results-dir", str(tmp_path), "--no-progress", "--experiment", "one-shot", "--cases", "a", "b",
            "--set", "federation.rounds=100000"]
    parent = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(tmp_path.glob("cache/pretrain-*/checkpoint.pt"))) < 2:
        time.sleep(0.5)
    workers = _children(parent.pid)
    assert len(workers) == 2, "two models train side by side in worker processes"
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=30) == 128 + signal.SIGTERM
    deadline = time.time() + 30
    while time.time() < deadline and any(map(_alive, workers)):
        time.sleep(0.2)
    assert not any(map(_alive, workers)), "worker processes outlived their parent"
    saved = [load_torch(p)["state"]["version"] for p in tmp_path.glob("cache/pretrain-*/checkpoint.pt")]
    assert len(saved) == 2 and min(saved) >= 1  # what was computed is kept: a rerun resumes from there


def test_kill_9_of_the_parent_leaves_no_orphan_worker(omniglot_root):
    """scripts/orphan_check.py with 2 tries (by hand: --tries 50)."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "orphan_check.py"
    out = subprocess.run([sys.executable, str(script), "--tries", "2", "--data-root", str(omniglot_root)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and re.search(r"\n2 kill -9 of the parent, \d+ workers, 0 orphans\n$", out.stdout), \
        out.stdout + out.stderr


@pytest.mark.parametrize("content", [{}, {"state": {}}, {"state": {"params": {}}}, [1, 2], "text"],
                         ids=["empty dict", "no params", "no log", "a list", "a string"])
def test_a_cached_model_of_another_structure_is_one_line_naming_it(omniglot_root, tmp_path, content):
    cfg = load_config("smoke", {"data.root": str(omniglot_root), "results_dir": str(tmp_path), "shipped_models": False})
    final = pipeline.pretrain(cfg, progress=False).path / "final.pt"
    torch.save(content, final)
    with pytest.raises(CacheError, match=rf"{re.escape(str(final))} does not hold what fmlbd saves there .* delete it"):
        pipeline.attack(cfg, progress=False)


def test_cached_snapshots_of_another_structure_are_one_line_naming_the_file(omniglot_root, tmp_path):
    cfg = load_config("smoke", {"data.root": str(omniglot_root), "results_dir": str(tmp_path)})
    pipeline.dampening_snapshots(cfg, "a", progress=False)
    path = pipeline.dampening_path(cfg, "a")
    torch.save({0: {}}, path)  # the round-0 snapshot only
    with pytest.raises(CacheError, match=rf"{re.escape(str(path))} does not hold what fmlbd saves there \(KeyError: 2\)"):
        pipeline.dampening_snapshots(cfg, "a", progress=False)


def test_a_cached_model_with_non_finite_weights_is_refused_never_used(omniglot_root, tmp_path):
    cfg = load_config("smoke", {"data.root": str(omniglot_root), "results_dir": str(tmp_path)})
    trained = pipeline.pretrain(cfg, progress=False)
    saved = load_torch(trained.path / "final.pt")
    saved["state"]["params"][next(iter(saved["state"]["params"]))][0] = float("nan")
    torch.save(saved, trained.path / "final.pt")
    with pytest.raises(CacheError, match=r"final.pt holds non-finite weights: delete it and rerun"):
        pipeline.attack(cfg, progress=False)


def test_an_attack_that_leaves_non_finite_weights_names_the_boost_and_caches_nothing(omniglot_root, tmp_path,
                                                                                    monkeypatch):
    cfg = load_config("smoke", {"data.root": str(omniglot_root), "results_dir": str(tmp_path)})
    pipeline.pretrain(cfg, progress=False)
    monkeypatch.setattr(pipeline, "_finite", lambda saved, path: saved)
    monkeypatch.setattr(pipeline, "all_finite", lambda params: False)   # as a boost that overflows float32 would
    with pytest.raises(ConfigError, match=r"the attack diverged: .* \(attack.boost=None, attack.attack_iterations=2, "
                                          r".* lower the boost or a learning rate"):
        pipeline.attack(cfg, progress=False)
    assert not (pipeline.attack_path(cfg, None) / "attacked.pt").exists()


def test_a_bad_workers_variable_is_one_line(omniglot_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FMLBD_WORKERS", "abc")
    code = main(["attack", "--profile", "smoke", "--data-root", str(omniglot_root), "--results-dir", str(tmp_path),
                 "--experiment", "one-shot", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "error: FMLBD_WORKERS='abc' is not a positive integer; unset it or give e.g. 2"
