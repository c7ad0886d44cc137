"""The federation on Flower, run for real (no mocks): the Simulation Engine, and the Deployment Engine
with a SuperLink and four SuperNodes as processes on localhost, with TLS + SuperNode authentication
(the classroom set-up; insecure mode differs only in the flags the processes start with). Needs the
extra ``pip install -e ".[flower]"`` (CI installs it and sets FMLBD_REQUIRE_FLOWER=1, so there these
tests run or fail, never skip)."""
from __future__ import annotations

import os
import time

import pandas as pd
import pytest
import torch

from fmlbd import pipeline

if os.environ.get("FMLBD_REQUIRE_FLOWER") != "1":
    pytest.importorskip("flwr", reason="the Flower extra is not installed: pip install -e '.[flower]'")

from fmlbd.flower import faulty_client  # noqa: E402
from fmlbd.flower.credentials import make_credentials  # noqa: E402
from fmlbd.flower.deployment import LocalDeployment  # noqa: E402
from fmlbd.flower.simulation import simulate  # noqa: E402
from tests.helpers import smoke


def check_buffered_run(updates: pd.DataFrame, cfg) -> None:
    """M of C rounds completed, a stale update counted, and the poisoned update arrived boosted."""
    rounds = updates.groupby("round")
    assert rounds.size().eq(cfg.federation.buffer_size).all()
    assert updates["round"].max() > cfg.federation.rounds
    assert (updates["staleness"] >= 1).any()  # a late update was aggregated in a later round
    poisoned, benign = updates[updates["poisoned"]], updates[~updates["poisoned"]]
    assert len(poisoned) == 1 and poisoned["client"].item() == 0
    assert poisoned["round"].item() == updates["round"].max() > cfg.federation.rounds
    boost = cfg.federation.buffer_size  # attack.boost none = buffer_size
    assert poisoned["norm"].item() > 0.5 * boost * benign["norm"].median()


@pytest.mark.slow
def test_simulation_engine_runs_the_buffered_federation(omniglot_root, tmp_path):
    cfg = smoke(omniglot_root, tmp_path)
    run, table = simulate(cfg)
    check_buffered_run(pd.DataFrame(run.updates), cfg)
    assert set(table["phase"]) == {"pre-trained", "attacked"} and table["value"].between(0, 1).all()


@pytest.mark.slow
def test_simulation_engine_can_start_from_the_pretrained_model(omniglot_root, tmp_path):
    cfg = smoke(omniglot_root, tmp_path)
    run, _ = simulate(cfg, pretrained=True)
    trained = pipeline.pretrain(cfg, progress=False)
    assert all(torch.equal(run.models["pre-trained"][k], trained.params[k]) for k in trained.params)
    assert run.records[0].round == cfg.federation.rounds + 1 and run.records[-1].poisoned


@pytest.mark.slow
def test_the_server_refuses_garbage_and_lies_and_the_run_goes_on(omniglot_root, tmp_path):
    """The last client commits every fault of faulty_client.FAULTS, one reply each; its crash repeats
    until the server drops it, and the other three go on."""
    cfg = smoke(omniglot_root, tmp_path, **{"federation.rounds": 20})
    lines = []
    run, table = simulate(cfg, client=faulty_client.app, log=lines.append)
    refused = pd.DataFrame(run.rejected)
    faulty = cfg.federation.clients - 1
    expected = ["non-finite values", "above the bound", "has shape", "has dtype", "missing ['", "unexpected ['extra",
                "claims client id 0, but this node is client", "claims base version -1", "failed: ", "failed: ",
                "dropped: failed 3 times in a row, last: "]
    assert (refused["client"] == faulty).all() and len(refused) == len(expected), refused["reason"].tolist()
    for reason, fragment in zip(refused["reason"], expected):
        assert fragment in reason, (reason, fragment)
    assert all(any(reason in line for line in lines) for reason in refused["reason"])  # each one logged
    assert "crashes on purpose" in refused["reason"].iloc[-1] and "\n" not in refused["reason"].iloc[-1]
    assert run.records[-1].round > cfg.federation.rounds and run.records[-1].poisoned  # the run completed
    assert all(torch.isfinite(v).all() for params in run.models.values() for v in params.values())
    updates = pd.DataFrame(run.updates)
    assert (updates.groupby("round").size() == cfg.federation.buffer_size).all()
    assert faulty not in set(updates[updates["round"] > refused["round"].max()]["client"])  # dropped
    assert table["value"].between(0, 1).all()


@pytest.mark.slow
def test_deployment_engine_with_tls_and_four_authenticated_supernodes_on_localhost(omniglot_root, tmp_path):
    """The classroom set-up: TLS, registered SuperNode keys, and the gate in front of the SuperLink, so a
    learner holding the class's ca.crt cannot submit a run; the instructor's run completes."""
    keys = make_credentials(tmp_path / "keys", ["127.0.0.1"], 5)["ca.crt"].parent
    cfg = smoke(omniglot_root, tmp_path / "results")
    run_config = {"profile": "smoke", "data-root": str(omniglot_root), "results-dir": str(tmp_path / "results")}
    with LocalDeployment(tmp_path / "flwr", omniglot_root, cfg.federation.clients, keys, gate=True) as deployment:
        intruder = deployment.start_node(0, key=keys / "node-4")  # a valid key the instructor never registered
        with pytest.raises(RuntimeError) as learner:
            deployment.run(run_config, timeout=120, home=deployment.learner_home(tmp_path / "learner"))
        deployment.run(run_config)
        deadline = time.monotonic() + 60
        while intruder.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        code = intruder.poll()  # read before the deployment stops every process it started
        link = (tmp_path / "flwr" / "superlink.log").read_text()
        gate = (tmp_path / "flwr" / "gate.log").read_text()
    assert "gate: refused POST /v1/control/" in gate, gate
    assert "403" in str(learner.value) or "only SuperNodes' Fleet API" in str(learner.value), learner.value
    check_buffered_run(pd.read_csv(tmp_path / "results" / "smoke" / "flower-updates-seed0.csv"), cfg)
    scores = pd.read_csv(tmp_path / "results" / "smoke" / "flower-seed0.csv")
    assert set(scores["phase"]) == {"pre-trained", "attacked"}
    assert len(pd.read_csv(tmp_path / "results" / "smoke" / "flower-refused-seed0.csv")) == 0
    node = (tmp_path / "flwr" / "supernode-0-node-4.log").read_text()
    assert code is not None and code != 0 and "Failed to activate SuperNode" in node, node
    assert "No SuperNode found with the given public key" in link and "running on https://" in link  # TLS


def test_credentials_are_private_from_the_first_byte_and_an_existing_ca_is_kept(tmp_path, capsys):
    from fmlbd.flower import credentials
    out = tmp_path / "keys"
    paths = make_credentials(out, ["instructor.example.org", "10.0.0.5"], 2)
    assert out.stat().st_mode & 0o777 == 0o700
    modes = {name: path.stat().st_mode & 0o777 for name, path in paths.items()}
    assert modes == {"ca.key": 0o600, "ca.crt": 0o644, "server.key": 0o600, "server.crt": 0o644,
                     "node-0": 0o600, "node-0.pub": 0o644, "node-1": 0o600, "node-1.pub": 0o644}
    ca = paths["ca.crt"].read_bytes()
    with pytest.raises(FileExistsError, match=r"ca.crt exists: a new CA would lock out every SuperNode .* --force"):
        make_credentials(out, ["instructor.example.org"], 2)
    assert paths["ca.crt"].read_bytes() == ca
    assert make_credentials(out, ["instructor.example.org"], 2, force=True)["ca.crt"].read_bytes() != ca
    for argv, message in ((["--host", "bad host"], "neither a host name nor an IP address"),
                          (["--host", "x.org;rm -rf ~"], "neither a host name nor an IP address"),
                          (["--host", "ok.org", "--nodes", "0"], "--nodes must be an integer from 1 to 10000"),
                          (["--host", "ok.org"], "ca.crt exists")):
        with pytest.raises(SystemExit) as info:
            credentials.main(["--out", str(out), *argv])
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert info.value.code == 2 and message in err, err
