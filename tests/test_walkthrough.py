"""The walk-through steps replay the pipeline's own mechanism (smoke profile)."""
import numpy as np
import torch

from fmlbd import pipeline, walkthrough
from fmlbd.builders import build_scenario, default_attention
from fmlbd.experiments.defense import defended_config
from tests.helpers import smoke


def test_walkthrough_steps_replay_the_pipeline(omniglot_root, tmp_path, smoke_cached):
    cfg = smoke_cached
    shown = walkthrough.small_episodes(cfg, build_scenario(cfg))
    poisoned, keyed_support, keyed_query = shown["adversary (client 0)"]
    assert keyed_support.sum() == keyed_query.sum() == 2 and not shown["benign client 1"][2].any()
    trained, att = pipeline.pretrain(cfg, "a", progress=False), pipeline.attack(cfg, "a", progress=False)
    live = walkthrough.live_poisoned_training(cfg, trained, iterations=2)
    assert list(live["iteration"]) == [0, 1, 2] and np.isfinite(live["value"]).all()
    timeline = walkthrough.attack_timeline(cfg, trained, after_rounds=1)
    hit = timeline[timeline["poisoned"]]
    assert len(hit) == 1 and hit["round"].iloc[0] == att.round  # the replay is the cached attack
    assert hit["norm"].iloc[0] > timeline[~timeline["poisoned"]]["norm"].max()  # boosted, 2 iterations
    drift = walkthrough.drift_from_poisoned(cfg, att, "a")
    assert drift["distance"].iloc[0] == 0 and (drift["attack_step"] > 0).all()
    trace = walkthrough.finetune_trace(cfg, att, "a", steps=2)
    p0 = trace[(trace["step"] == 0) & (trace["metric"] == "p(target | keyed image)")]["value"].iloc[0]
    assert abs(p0 - 1 / cfg.eval.ways) < 1e-6  # zero head: uniform before the first step
    defended = defended_config(cfg)
    models = {"undefended": (cfg, att), "defended": (defended, pipeline.attack(defended, "a", progress=False))}
    projection = walkthrough.feature_projection(models, "a")
    assert set(projection["kind"]) == {"target class", "backdoor, clean", "backdoor, keyed"}
    weights = walkthrough.attention_weights(defended, models["defended"][1], "a", default_attention(cfg))
    assert torch.isclose(weights["weights"].sum(), torch.tensor(1.0)) and len(weights["weights"]) == len(weights["support_y"])


def test_each_rule_on_the_attack_round_shows_what_it_drops_or_shrinks(omniglot_root, tmp_path):
    from fmlbd.aggregation import AGGREGATIONS, NormClip

    cfg = smoke(omniglot_root, tmp_path)
    trained = pipeline.pretrain(cfg, "a", progress=False)
    updates = walkthrough.attack_round_updates(cfg, trained)
    assert len(updates) == cfg.federation.buffer_size and sum(u.poisoned for u in updates) == 1
    assert [u.client for u in updates if u.poisoned] == [0]
    rules = {"mean": AGGREGATIONS["mean"](), "norm clip": NormClip(), "median": AGGREGATIONS["median"](),
             "multi-Krum": AGGREGATIONS["multi_krum"](), "flame": AGGREGATIONS["flame"]()}
    table = walkthrough.rules_on_one_round(updates, rules)
    assert len(table) == len(rules) * len(updates)
    w = table.set_index(["rule", "poisoned"])["weight"]
    assert np.allclose(table[table["rule"] == "mean"]["weight"], 1 / 3)
    assert w["multi-Krum", True] == 0 and w["norm clip", True] < 1 / 3  # boosted: dropped, shrunk
    share = table[table["rule"] == "median"]["why_value"]
    assert share.sum() >= 1 - 1e-6  # every coordinate is one update's value (ties count for each)
    assert table[table["rule"] == "mean"]["step_cos_poisoned"].iloc[0] > table[table["rule"] == "multi-Krum"][
        "step_cos_poisoned"].iloc[0]


def test_the_benign_timeline_counts_staleness_from_the_version_each_update_trained_on(omniglot_root, tmp_path, smoke_cached):
    cfg = smoke_cached
    timeline = walkthrough.benign_timeline(cfg, rounds=6)
    assert list(timeline.groupby("round").size()) == [cfg.federation.buffer_size] * 6
    assert (timeline["staleness"] == timeline["round"] - 1 - timeline["base_version"]).all()
    assert (timeline["arrival"] <= timeline["aggregated"]).all() and (timeline["norm"] > 0).all()
    first = timeline[timeline["round"] == 1]
    assert (first["base_version"] == 0).all() and first["aggregated"].eq(first["arrival"].max()).all()
    table = walkthrough.rounds_table(timeline)
    row = timeline[timeline["round"] == 2]
    assert table.loc[2, "clients"] == ", ".join(map(str, row["client"]))
    assert table.loc[2, "staleness"] == ", ".join(map(str, row["staleness"]))
