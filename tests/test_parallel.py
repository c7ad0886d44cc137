"""Side-by-side computation gives exactly the sequential results."""
import os
import time

import pandas as pd
import pytest
import torch

from fmlbd import builders, evaluation, parallel, pipeline
from fmlbd.config import with_overrides
from tests.helpers import smoke


def test_pmap_keeps_order_runs_in_other_processes_and_uses_one_thread():
    out = parallel.pmap(lambda x: (x * x, os.getpid(), torch.get_num_threads()), range(7), workers=3)
    assert [v for v, _, _ in out] == [x * x for x in range(7)]
    assert len({pid for _, pid, _ in out}) == 3 and os.getpid() not in {pid for _, pid, _ in out}
    assert {threads for _, _, threads in out} == {1}


def test_a_free_worker_takes_the_next_item():
    """One long item does not hold back the items dealt after it: the other worker takes them all."""
    def work(x):
        if x == 0:
            time.sleep(1.0)
        return x, os.getpid()

    out = parallel.pmap(work, range(9), workers=2)
    assert [x for x, _ in out] == list(range(9))
    slow = out[0][1]
    assert [pid for _, pid in out[1:]].count(slow) == 0


def test_pmap_reraises_a_workers_exception_with_its_type():
    def fail(x):
        if x == 3:
            raise KeyError("three")
        return x

    with pytest.raises(KeyError, match="three"):
        parallel.pmap(fail, range(5), workers=2)


def test_nested_pmap_runs_in_place_inside_a_worker():
    pids = parallel.pmap(lambda _: {os.getpid()} | {p for p in parallel.pmap(lambda _: os.getpid(), range(4))},
                         range(2), workers=2)
    assert all(len(p) == 1 for p in pids)


def test_fmlbd_workers_is_checked(monkeypatch):
    monkeypatch.setenv("FMLBD_WORKERS", "two")
    with pytest.raises(ValueError, match="FMLBD_WORKERS"):
        parallel.cpu_workers()
    monkeypatch.setenv("FMLBD_WORKERS", "1")
    assert parallel.pmap(lambda _: os.getpid(), range(3)) == [os.getpid()] * 3


def test_pool_serves_many_maps_and_closes():
    offset = 10
    with parallel.Pool(lambda x: x + offset, 2) as pool:
        assert pool.map(range(5)) == [10, 11, 12, 13, 14]
        assert pool.map([1]) == [11]
        procs = list(pool.procs)
    assert not any(p.is_alive() for p in procs)


def test_federation_with_worker_processes_is_bit_identical_to_sequential(omniglot_root, tmp_path):
    """The attack round and the rounds around it: the adversary's state (attacked once) and every
    client's random stream travel to the workers and back."""
    cfg = smoke(omniglot_root, tmp_path)
    trained = pipeline.pretrain(cfg, progress=False)
    runs = []
    for workers in (1, 3):
        fed = builders.make_federation(cfg, trained.model, trained.params,
                                       builders.attack_clients(cfg, trained.scenario, cfg.federation.rounds), workers)
        fed.load_state_dict(trained.state)
        records = [fed.step() for _ in range(4)]
        fed.close()
        runs.append((records, fed.state_dict()))
    (records_1, state_1), (records_3, state_3) = runs
    assert records_1 == records_3 and sum(r.poisoned for r in records_1) == 1
    assert state_1["clients"] == state_3["clients"] and state_1["client_rngs"] == state_3["client_rngs"]
    assert all(torch.equal(state_1["params"][k], state_3["params"][k]) for k in state_1["params"])


def test_metrics_side_by_side_equal_metrics_in_one_process(omniglot_root, tmp_path, monkeypatch):
    cfg = smoke(omniglot_root, tmp_path, **{"eval.episodes": 6})
    att = pipeline.attack(cfg, progress=False)
    scores = []
    for workers in ("1", "2"):
        monkeypatch.setenv("FMLBD_WORKERS", workers)
        apart = with_overrides(cfg, {"results_dir": str(tmp_path / workers)})  # the main task computed in each
        scores.append(evaluation.attack_metrics(apart, att.trained.model, att.after, att.trained.scenario, "c"))
    assert len(list((tmp_path / "2").rglob("main-task/*.npy"))) == 1
    assert scores[0] == scores[1]


@pytest.mark.slow
def test_attacks_and_dampening_cached_side_by_side_equal_the_in_process_ones(omniglot_root, tmp_path, monkeypatch):
    from fmlbd.experiments import attack as attacks, persistence

    tables = []
    for workers in ("2", "1"):
        monkeypatch.setenv("FMLBD_WORKERS", workers)
        cfg = smoke(omniglot_root, tmp_path / workers)
        tables.append((attacks.attack_draws(cfg, ("a", "b"), progress=False),
                       persistence.dampening(cfg, ("a", "b", "c"), progress=False)))
    for side_by_side, in_process in zip(*tables):
        pd.testing.assert_frame_equal(side_by_side, in_process)


def test_side_by_side_pretraining_shows_one_progress_bar_for_all_its_models(omniglot_root, tmp_path, capfd):
    from fmlbd import hygiene
    from fmlbd.workers import missing_models, pretrain_cases

    cfg = smoke(omniglot_root, tmp_path)
    pretrain_cases(cfg, ("a", "b"), progress=True, workers=2)
    assert missing_models([cfg], ("a", "b")) == {}
    err = capfd.readouterr().err
    bars = [line for line in hygiene.visible_lines(err) if hygiene.PROGRESS_BAR.search(line)]
    total = 2 * cfg.federation.rounds
    assert len(bars) == 1 and f"{total}/{total}" in bars[0], err
