import numpy as np
import pandas as pd
import pytest
import torch

from fmlbd import builders, evaluation, metrics, pipeline, registry, workers
from fmlbd.experiments import attack as attacks, persistence
from fmlbd.config import ConfigError, with_overrides
from fmlbd.evaluation import METRICS
from fmlbd.federated import Federation
from fmlbd.results import load_torch
from tests.helpers import smoke


def test_pretrain_is_cached(omniglot_root, tmp_path):
    cfg = smoke(omniglot_root, tmp_path)
    first = pipeline.pretrain(cfg, progress=False)
    assert first.state["version"] == cfg.federation.rounds and first.minutes > 0
    assert list(first.log["round"]) == [2, 4] and set(first.log["metric"]) == {"main_task_acc"}
    again = pipeline.pretrain(cfg, progress=False)
    assert again.minutes == 0.0 and again.path == first.path
    for k, v in first.params.items():
        assert torch.equal(v, again.params[k])


def test_the_training_loop_caches_nothing_and_trains_what_pretrain_caches(omniglot_root, tmp_path):
    cfg = smoke(omniglot_root, tmp_path / "loop")
    scenario = builders.build_scenario(cfg)
    model = builders.build_model(cfg, scenario)
    with builders.make_federation(cfg, model, builders.initial_params(cfg, model),
                                  builders.benign_clients(cfg, scenario)) as federation:
        steps = list(pipeline.benign_rounds(cfg, federation, model, scenario))
        params = federation.params
    assert [r.round for r, _ in steps] == [1, 2, 3, 4] and [a is None for _, a in steps] == [True, False, True, False]
    assert not any(tmp_path.glob("loop/cache/pretrain-*"))
    cached = pipeline.pretrain(smoke(omniglot_root, tmp_path / "cached"), progress=False)
    assert all(torch.equal(params[k], cached.params[k]) for k in params)
    assert list(cached.log["value"]) == [a for _, a in steps if a is not None]


def test_cache_is_shared_across_paths_to_the_same_data(omniglot_root, tmp_path):
    first = pipeline.pretrain(smoke(omniglot_root, tmp_path), progress=False)
    link = tmp_path / "elsewhere"
    link.symlink_to(omniglot_root)
    again = pipeline.pretrain(smoke(link, tmp_path), progress=False)
    assert again.path == first.path and again.minutes == 0.0
    other = pipeline.pretrain(smoke(omniglot_root, tmp_path, **{"data.rotations": 2}), progress=False)
    assert other.path != first.path


def test_interrupted_pretrain_resumes_to_the_same_model(omniglot_root, tmp_path, monkeypatch):
    reference = pipeline.pretrain(smoke(omniglot_root, tmp_path / "ref"), progress=False)

    cfg = smoke(omniglot_root, tmp_path / "resumed")
    real_step = Federation.step

    def crash_at_round_3(self):
        if self.server.version == 2:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(Federation, "step", crash_at_round_3)
    with pytest.raises(KeyboardInterrupt):
        pipeline.pretrain(cfg, progress=False)
    path = next((tmp_path / "resumed" / "cache").glob("pretrain-*"))
    assert (path / "checkpoint.pt").is_file() and not (path / "final.pt").exists()
    assert load_torch(path / "checkpoint.pt")["state"]["version"] == 2

    monkeypatch.setattr(Federation, "step", real_step)
    resumed = pipeline.pretrain(cfg, progress=False)
    assert resumed.state["version"] == 4 and not (path / "checkpoint.pt").exists()
    for k, v in reference.params.items():
        assert torch.equal(v, resumed.params[k]), k
    assert list(resumed.log["value"]) == list(reference.log["value"])


def test_same_seed_same_accuracies_different_seed_differs(omniglot_root, tmp_path):
    accs = []
    for run, seed in enumerate((0, 0, 1)):
        cfg = smoke(omniglot_root, tmp_path / f"run{run}", seed=seed)
        trained = pipeline.pretrain(cfg, progress=False)
        accs.append(evaluation.main_task_accuracies(cfg, trained.model, trained.params, trained.scenario))
    assert np.array_equal(accs[0], accs[1])
    assert not np.array_equal(accs[0], accs[2])


def test_attack_metrics_are_the_means_of_the_per_episode_scores(omniglot_root, tmp_path, smoke_cached):
    cfg = smoke_cached
    trained = pipeline.pretrain(cfg, progress=False)
    args = (cfg, trained.model, trained.params, trained.scenario, "a")
    scores, means = evaluation.attack_scores(*args), evaluation.attack_metrics(*args)
    assert list(scores) == list(means) == list(evaluation.METRICS)
    assert all(len(v) == cfg.eval.episodes and float(v.mean()) == means[m] for m, v in scores.items())
    table = evaluation.scores_table(scores)
    assert list(table.index) == list(evaluation.METRICS) and (table["episodes"] == cfg.eval.episodes).all()
    m = scores["backdoor_val_acc"]
    assert table.loc["backdoor_val_acc", "ci95"] == pytest.approx(1.96 * m.std(ddof=1) / len(m) ** 0.5)


def test_main_task_table_reports_mean_and_ci(omniglot_root, tmp_path, smoke_cached):
    cfg = smoke_cached
    trained = pipeline.pretrain(cfg, progress=False)
    table = evaluation.main_task_table(cfg, trained.model, trained.params, trained.scenario, shots=(1, 5))
    assert list(table["shots"]) == [1, 5] and (table["episodes"] == cfg.eval.episodes).all()
    assert ((table["value"] >= 0) & (table["value"] <= 1)).all() and (table["ci95"] >= 0).all()


def test_eval_ways_larger_than_a_trained_head_is_rejected(omniglot_root, tmp_path):
    with pytest.raises(ConfigError, match="eval.ways=6 exceeds meta.ways=5"):
        smoke(omniglot_root, tmp_path, **{"eval.ways": 6, "meta.zero_head": False})


def test_a_zeroed_head_is_rebuilt_for_wider_meta_test_episodes(omniglot_root, tmp_path, smoke_cached):
    cfg = smoke_cached
    trained = pipeline.pretrain(cfg, progress=False)
    table = evaluation.main_task_table(cfg, trained.model, trained.params, trained.scenario, (1,), (5, 20))
    assert list(table["ways"]) == [5, 20] and ((table["value"] >= 0) & (table["value"] <= 1)).all()
    wide = evaluation.adapter(smoke(omniglot_root, tmp_path, **{"eval.ways": 20}), trained.model, trained.params)
    episode = evaluation.main_episodes(smoke(omniglot_root, tmp_path, **{"eval.ways": 20}), trained.scenario)[0]
    assert episode.ways == 20 and wide(episode)(episode.query_x).max() >= 5  # a 5-output head could not say it


def test_attack_experiments_produce_tidy_tables(omniglot_root, tmp_path, smoke_cached):
    cfg = smoke_cached
    att = pipeline.attack(cfg, "a", progress=False)
    assert att.round > cfg.federation.rounds and att.state["version"] == att.round
    assert att.state["clients"][0] == {"sent": 1} and att.first_round == att.round
    assert any(not torch.equal(att.before[k], att.after[k]) for k in att.before)
    assert pipeline.attack(cfg, "c", progress=False).path == att.path  # cases (a) and (c) share the attack

    one = attacks.one_shot_attack(cfg, ("a", "b"), progress=False)
    assert len(one) == 2 * 2 * 4 and set(one["phase"]) == {"before", "after"}
    assert set(one["metric"]) == set(evaluation.METRICS)
    assert one["value"].between(0, 1).all()

    damp = persistence.dampening(cfg, ("b",), progress=False)
    assert sorted(set(damp["round"])) == [0, 2, 3]

    ft = persistence.finetune_failure(cfg, ("c",), progress=False)
    assert sorted(set(ft["step"])) == [0, 1, 2, 3] and len(ft) == 4 * 4
    # tables are cached: a second call reads them back
    cached = persistence.finetune_failure(cfg, ("c",), progress=False)
    assert np.allclose(cached["value"], ft["value"])


def test_attack_draws_resample_only_the_adversary(omniglot_root, tmp_path, smoke_cached):
    cfg = smoke_cached
    att = pipeline.attack(cfg, "a", progress=False)
    other = pipeline.attack(smoke(omniglot_root, tmp_path, **{"attack.draw": 1}), "a", progress=False)
    assert other.trained.path == att.trained.path and other.path != att.path and other.round == att.round
    assert all(torch.equal(other.before[k], att.before[k]) for k in att.before)
    assert any(not torch.equal(other.after[k], att.after[k]) for k in att.after)
    draws = attacks.attack_draws(cfg, ("a", "b"), progress=False)
    assert len(draws) == 2 * cfg.measure.draws * 4 and sorted(set(draws["draw"])) == [0, 1]
    first = draws[draws["draw"] == 0].drop(columns="draw").reset_index(drop=True)
    after = attacks.one_shot_attack(cfg, ("a", "b"), progress=False)
    after = after[after["phase"] == "after"].drop(columns="phase").reset_index(drop=True)
    assert first.equals(after[first.columns])


def test_finetune_failure_scores_a_step_grid_that_agrees_with_every_step(omniglot_root, tmp_path):
    grid = smoke(omniglot_root, tmp_path / "grid", **{"measure.finetune_max_steps": 17, "measure.finetune_eval_every": 5})
    assert persistence.finetune_steps_scored(grid) == list(range(11)) + [15, 17]
    every = smoke(omniglot_root, tmp_path / "every",
                  **{"measure.finetune_max_steps": 17, "measure.finetune_eval_every": 1})
    assert persistence.finetune_steps_scored(every) == list(range(18))
    coarse = persistence.finetune_failure(grid, ("a", "c"), progress=False)
    fine = persistence.finetune_failure(every, ("a", "c"), progress=False)
    merged = coarse.merge(fine, on=["case", "step", "metric"], suffixes=("_grid", "_every"))
    assert len(merged) == len(coarse) == 2 * 13 * 4
    assert np.allclose(merged["value_grid"], merged["value_every"])
    # cases (a) and (c) share the attacked model, so the main-task curve is the same one
    main = coarse[coarse["metric"] == "main_task_acc"].pivot(index="step", columns="case", values="value")
    assert np.array_equal(main["a"].to_numpy(), main["c"].to_numpy())
    with pytest.raises(ConfigError, match="measure.finetune_eval_every must be an integer in 1..100000"):
        smoke(omniglot_root, tmp_path, **{"measure.finetune_eval_every": 0})


def test_main_task_accuracy_is_saved_per_weights(omniglot_root, tmp_path):
    cfg = smoke(omniglot_root, tmp_path)
    trained = pipeline.pretrain(cfg, progress=False)
    model, scenario = trained.model, trained.scenario
    first = evaluation.main_task_accuracies(cfg, model, trained.params, scenario)
    first[:] = -1  # callers get copies
    again = evaluation.main_task_accuracies(cfg, model, trained.params, scenario)
    assert (again >= 0).all()
    eps = metrics.evaluation_episodes(scenario.pool, scenario.test_classes, cfg.eval.ways, cfg.eval.shots,
                                          cfg.eval.queries, cfg.eval.episodes, cfg.seed)
    assert np.array_equal(again, metrics.episode_accuracies(evaluation.adapter(cfg, model, trained.params), eps))
    scrambled = {k: torch.randn_like(v) for k, v in trained.params.items()}
    assert evaluation.params_digest(scrambled) != evaluation.params_digest(trained.params)
    before = set(tmp_path.glob("cache/main-task/*.npy"))
    assert np.array_equal(evaluation.main_task_accuracies(cfg, model, scrambled, scenario),
                          metrics.episode_accuracies(evaluation.adapter(cfg, model, scrambled), eps))
    assert len(set(tmp_path.glob("cache/main-task/*.npy")) - before) == 1  # other weights: another file
    for path in before:
        path.write_bytes(path.read_bytes()[:20])  # a cut file is computed again
    assert np.array_equal(evaluation.main_task_accuracies(cfg, model, trained.params, scenario), again)


def test_chance_control_scores_keyed_and_clean_images(omniglot_root, tmp_path, smoke_cached):
    cfg = smoke_cached
    table = attacks.chance_control(cfg, ("a",), progress=False)
    assert sorted(set(table["images"])) == ["clean", "keyed"] and len(table) == 4
    assert table["value"].between(0, 1).all()


def test_cli_attack_runs_the_controls_on_request(omniglot_root, tmp_path, capsys):
    from fmlbd.cli import main

    code = main(["attack", "--profile", "smoke", "--data-root", str(omniglot_root), "--results-dir", str(tmp_path),
                 "--experiment", "chance", "draws", "--cases", "a", "--no-progress"])
    assert code == 0 and "backdoor_train_acc" in capsys.readouterr().out
    assert (tmp_path / "smoke" / "chance-seed0.csv").is_file()
    draws = pd.read_csv(tmp_path / "smoke" / "draws-seed0.csv")
    assert sorted(set(draws["draw"])) == [0, 1] and len(draws) == 2 * 4


def test_pretrain_cases_trains_missing_models_in_parallel_processes(omniglot_root, tmp_path):
    cfg = smoke(omniglot_root, tmp_path / "parallel")
    workers.pretrain_cases(cfg, ("a", "b", "c"), progress=False, workers=2)
    for case in ("a", "b"):
        parallel = pipeline.pretrain(cfg, case, progress=False)
        assert parallel.minutes == 0.0  # trained by a worker process
        alone = pipeline.pretrain(smoke(omniglot_root, tmp_path / "alone"), case, progress=False)
        assert alone.minutes > 0
        for k, v in alone.params.items():  # one thread in both: bit-identical
            assert torch.equal(parallel.params[k], v)


def test_boost_experiment_compares_the_boosted_update_with_a_plain_one(omniglot_root, tmp_path, smoke_cached):
    cfg = smoke_cached
    table = registry.get("boost")(cfg, ("a",), progress=False)
    assert sorted(set(table["boost"])) == [1.0, cfg.federation.buffer_size] and len(table) == 2 * 4
    boosted = table[table["boost"] == cfg.federation.buffer_size].drop(columns="boost").reset_index(drop=True)
    after = attacks.one_shot_attack(cfg, ("a",), progress=False)
    after = after[after["phase"] == "after"].drop(columns="phase").reset_index(drop=True)
    assert boosted.equals(after[boosted.columns])  # the boosted run is the one-shot experiment's own


def test_a_spread_attack_poisons_consecutive_updates_and_ends_after_the_last(omniglot_root, tmp_path):
    one = pipeline.attack(smoke(omniglot_root, tmp_path), "a", progress=False)
    spread = pipeline.attack(smoke(omniglot_root, tmp_path, **{"attack.poison_rounds": 3, "attack.boost": 1.0}), "a",
                             progress=False)
    assert spread.first_round == one.round and spread.round >= spread.first_round + 2
    assert spread.state["clients"][0] == {"sent": 3}
    assert all(torch.equal(one.before[k], spread.before[k]) for k in one.before)  # same model before the first


@pytest.mark.slow
def test_server_rules_table_and_which_rules_stop_the_attack(omniglot_root, tmp_path):
    from fmlbd.experiments import server

    cfg = smoke(omniglot_root, tmp_path, **{"measure.rule_draws": 2})
    rules, names = ("mean", "multi_krum"), ("boosted", "disguised")
    table = server.server_rules(cfg, ("a",), False, {name: rules for name in names})
    assert set(table["phase"]) == {"no attack", "right after", f"after {cfg.measure.rule_rounds} rounds"}
    assert len(table) == 2 * 3 + 2 * 2 * 2 * 2 * 3  # no attack per rule; rule x attack x draw x 2 phases
    assert "main_task_acc" not in set(table["metric"])  # the notebooks read it from rule_cost (200 episodes)
    with_main = server.server_rules(with_overrides(cfg, {"measure.rule_main_task": True}), ("a",), False,
                                    {"boosted": ("mean",)})
    assert set(with_main["metric"]) == set(METRICS)
    cost = server.rule_cost(cfg, ("a",), False, rules)
    with pytest.raises(ValueError, match="unknown adversaries or rules"):
        server.server_rules(cfg, ("a",), False, {"boosted": ("krum",)})
    assert set(cost["metric"]) == {"main_task_acc", "main_task_ci95", "rounds_to_mean_acc"}
    assert cost.set_index(["rule", "metric"])["value"]["mean", "rounds_to_mean_acc"] <= cfg.federation.rounds
    stops = server.stopping_rules(table, cost)
    assert list(stops["rule"]) == list(rules) and stops["main_task_gap"].iloc[0] == 0
    again = server.server_rules(cfg, ("a",), False, {name: rules for name in names})  # cached
    pd.testing.assert_frame_equal(table, again)
    krum = server.rule_config(cfg, "multi_krum", "disguised", 1)
    assert (krum.federation.aggregation, krum.attack.draw, krum.attack.disguise_z) == ("multi_krum", 1, 1.0)


def test_the_runner_loads_each_stage_result_once_and_keys_tables_by_case(omniglot_root, tmp_path, smoke_cached,
                                                                         monkeypatch):
    from fmlbd import runner
    from fmlbd.experiments import server

    cfg = smoke_cached
    loads = []
    real = runner.STAGES["attacked"]
    monkeypatch.setitem(runner.STAGES, "attacked", runner.Stage(
        lambda c, case, progress: loads.append(case) or real.load(c, case, progress), real.prepare, real.key))
    tables = runner.run([runner.Table(name, "attacked", cfg, case, lambda att, case: pd.DataFrame({"case": [case]}),
                                      {"case": case}) for case in ("a", "b") for name in ("first", "second")], False)
    assert loads == ["a", "b"] and [t["case"].item() for t in tables] == ["a", "a", "b", "b"]
    # cases (a) and (c) share their pre-trained model: each still gets its own rows
    cost = server.rule_cost(cfg, ("a", "c"), False, ("mean",))
    assert list(dict.fromkeys(cost["case"])) == ["a", "c"]
    assert cost[cost["case"] == "a"]["value"].tolist() == cost[cost["case"] == "c"]["value"].tolist()
