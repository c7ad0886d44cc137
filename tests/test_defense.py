import ast
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch

import fmlbd.defense as defense_module
from fmlbd import pipeline
from fmlbd.experiments import attack as attacks, defense as defenses
from fmlbd.config import ConfigError
from fmlbd.attention import Attention
from fmlbd.defense import MatchingNetworkDefense
from fmlbd.matching import matching_loss
from fmlbd.federated import Update
from fmlbd.functional import get_params
from fmlbd.models import ConvNet
from tests.helpers import smoke, toy_episode


def test_kernels_give_class_probabilities():
    sim = torch.tensor([[0.9, 0.1, 0.8, 0.2], [0.0, 0.3, 0.1, 0.95]])
    support_y = torch.tensor([0, 0, 1, 1])
    for kernel in ("softmax", "class_max", "topk"):
        p = Attention(kernel, 0.1, k=1).class_scores(sim, support_y, 2)
        assert p.shape == (2, 2) and torch.allclose(p.sum(1), torch.ones(2))
        assert p.argmax(1).tolist() == [0, 1]


def test_class_max_is_not_outvoted_by_many_weak_matches():
    # class 0: one near-identical example; class 1: many moderately similar ones
    sim = torch.tensor([[0.99, 0.7, 0.7, 0.7, 0.7, 0.7]])
    support_y = torch.tensor([0, 1, 1, 1, 1, 1])
    assert Attention("softmax", 1.0).class_scores(sim, support_y, 2).argmax().item() == 1
    assert Attention("class_max", 1.0).class_scores(sim, support_y, 2).argmax().item() == 0
    assert Attention("topk", 1.0, k=1).class_scores(sim, support_y, 2).argmax().item() == 0


def test_bad_attention_is_rejected():
    with pytest.raises(ValueError, match="unknown attention kernel"):
        Attention("dot")
    with pytest.raises(ValueError):
        Attention("softmax", temperature=0)


def test_defense_classifies_with_support_features_only():
    torch.manual_seed(0)
    model = ConvNet(1, 8, 3, 28)
    ep = toy_episode()
    d = MatchingNetworkDefense(model, get_params(model), ep.support_x, ep.support_y, Attention("softmax", 0.05))
    assert d.support_features.shape == (len(ep.support_x), model.feature_dim)
    assert torch.allclose(d.support_features.norm(dim=1), torch.ones(len(ep.support_x)), atol=1e-5)
    # the queries are the support images themselves: matching finds their own class
    assert (d.predict(ep.query_x) == ep.query_y).float().mean() == 1.0
    one_by_one = torch.cat([d.predict(ep.query_x[i:i + 1]) for i in range(len(ep.query_x))])
    assert torch.equal(one_by_one, d.predict(ep.query_x))
    # the shared head is never used: changing it changes nothing
    params = get_params(model)
    params["head.weight"] = torch.randn_like(params["head.weight"]) * 100
    d2 = MatchingNetworkDefense(model, params, ep.support_x, ep.support_y, Attention("softmax", 0.05))
    assert torch.equal(d2.probabilities(ep.query_x), d.probabilities(ep.query_x))


def test_defense_api_cannot_receive_other_clients_updates():
    # the only inputs: the model, the global weights, the user's own support set, the kernel
    params = list(inspect.signature(MatchingNetworkDefense.__init__).parameters)
    assert params == ["self", "model", "global_params", "support_x", "support_y", "attention"]
    torch.manual_seed(0)
    model = ConvNet(1, 8, 3, 28)
    ep = toy_episode()
    update = Update(0.0, 1, 0, get_params(model))
    for not_global in (update, [update], {"client": 1, "delta": update.delta}):
        with pytest.raises(TypeError):
            MatchingNetworkDefense(model, not_global, ep.support_x, ep.support_y)
    # and the module never imports the federation (no path to the server's buffer of updates)
    tree = ast.parse(Path(defense_module.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any("federated" in (m or "") for m in imported)


def test_defended_federation_shares_features_only(omniglot_root, tmp_path, smoke_cached):
    cfg = smoke_cached
    defended = defenses.defended_config(cfg)
    assert defended.meta.algorithm == "matching" and defended.meta.inner_steps == cfg.defense.train_inner_steps
    assert defended.meta.shots == cfg.defense.train_shots
    assert defended.attack == cfg.attack and defended.federation == cfg.federation and defended.seed == cfg.seed
    head = smoke(omniglot_root, tmp_path, **{"defense.shared_model": "head"})
    assert defenses.defended_config(head) == head
    with pytest.raises(ConfigError, match="shared_model"):
        defenses.defended_config(smoke(omniglot_root, tmp_path, **{"defense.shared_model": "logits"}))
    # the poisoned federation of the defense never trained a decision layer: its head is still zero
    att = pipeline.attack(defended, "a", progress=False)
    assert all(not v.any() for k, v in att.after.items() if k.startswith("head."))
    assert any(not torch.equal(att.before[k], att.after[k]) for k in att.after if not k.startswith("head."))
    # the adaptive adversary attacks the same pre-trained model, with its own (queries-only) poisoned update
    adaptive = defenses.adaptive_attack(cfg, ("a",), progress=False)
    assert set(adaptive["phase"]) == {"after"} and len(adaptive) == 4 and adaptive["value"].between(0, 1).all()
    adaptive_cfg = defenses.defended_config(smoke(omniglot_root, tmp_path, **{"attack.poison_support": False}))
    other = pipeline.attack(adaptive_cfg, "a", progress=False)
    assert other.trained.path == att.trained.path and other.path != att.path
    assert all(torch.equal(other.before[k], att.before[k]) for k in att.before)


def test_defense_experiments_produce_tidy_tables(omniglot_root, tmp_path, smoke_cached):
    cfg = smoke_cached
    table = defenses.defense_comparison(cfg, ("a",), progress=False)
    methods = ["fine-tuning", "matching, shared head", "matching, shared features"]
    assert list(table["method"].unique()) == methods
    assert len(table) == 3 * 2 * 4 and table["value"].between(0, 1).all()
    # the undefended rows are the one-shot experiment's, on the head-trained federation
    assert table[table["method"] == "fine-tuning"].drop(columns="method").reset_index(drop=True).equals(
        attacks.one_shot_attack(cfg, ("a",), progress=False))
    head_only = defenses.defense_comparison(smoke(omniglot_root, tmp_path, **{"defense.shared_model": "head"}),
                                               ("a",), progress=False)
    assert list(head_only["method"].unique()) == methods[:2]
    ablation = defenses.attention_ablation(cfg, ("b",), progress=False)
    assert set(ablation["kernel"]) == {"softmax", "class_max"} and len(ablation) == 2 * 2 * 4
    # with one support image per class every kernel picks the most similar one: same predictions
    one_shot = ablation[ablation["shots"] == 1].pivot_table(index="metric", columns="kernel", values="value")
    assert np.array_equal(one_shot["softmax"], one_shot["class_max"])
    # the ablation's default-kernel row is the defended "after" row of the comparison
    compared = defenses.defense_comparison(cfg, ("b",), progress=False)
    after = compared[(compared["method"] == "matching, shared features") & (compared["phase"] == "after")]
    default = ablation[(ablation["kernel"] == "softmax") & (ablation["temperature"] == 0.1)
                       & (ablation["shots"] == cfg.eval.shots)]
    assert dict(zip(default["metric"], default["value"])) == dict(zip(after["metric"], after["value"]))
    over_rounds = defenses.defense_over_rounds(cfg, ("a",), progress=False)
    assert sorted(set(over_rounds["round"])) == [0, 2, 3]
    cost = defenses.inference_cost(cfg, progress=False)
    assert list(cost["method"]) == ["fine-tuning", "matching network"] and (cost["seconds_per_episode"] > 0).all()


@pytest.mark.slow
def test_defend_command_writes_every_table(omniglot_root, tmp_path, capsys):
    from fmlbd.cli import main

    assert main(["defend", "--profile", "smoke", "--data-root", str(omniglot_root), "--results-dir", str(tmp_path),
                 "--cases", "a", "b", "--no-progress"]) == 0
    out = tmp_path / "smoke"
    for name in ("defense", "defense-draws", "adaptive", "ablation", "defense-rounds", "cost"):
        assert (out / f"{name}-seed0.csv").is_file() and (out / f"{name}-seed0.meta.json").is_file(), name
    assert (out / "figures" / "defense.png").is_file() and (out / "figures" / "defense_draws.png").is_file()
    assert "== adaptive: an adversary who knows the defense" in capsys.readouterr().out


def test_matching_loss_normalises_queries_with_support_statistics_and_differentiates_through_them():
    torch.manual_seed(0)
    model = ConvNet(1, 8, 3, 28)
    ep = toy_episode()
    query_x = ep.query_x + 0.1 * torch.randn_like(ep.query_x)
    attention = Attention("softmax", 0.1)
    params = {k: v.requires_grad_() for k, v in get_params(model).items()}
    loss = matching_loss(model, params, ep.support_x, ep.support_y, query_x, ep.query_y, attention)
    # the same value as the defense computes: support in train mode, then each query with its statistics
    d = MatchingNetworkDefense(model, get_params(model), ep.support_x, ep.support_y, attention)
    expected = torch.nn.functional.nll_loss(torch.log(d.probabilities(query_x).clamp_min(1e-8)), ep.query_y)
    assert torch.allclose(loss, expected, atol=1e-6)
    # a conv bias before batch norm cannot change the loss, so its true gradient is zero; a gradient
    # that treated the support statistics as constants would not be
    grads = torch.autograd.grad(loss, [params[f"encoder.{i}.0.bias"] for i in range(4)])
    assert all(g.abs().max() < 1e-4 for g in grads)
    assert all(m.support_size is None for m in model.modules() if hasattr(m, "support_size"))


def test_draws_are_measured_against_the_defended_no_attack_level():
    import pandas as pd
    from fmlbd.metrics import BACKDOOR_MARGIN, mean_ci95_t

    comparison = pd.DataFrame([{"case": "a", "method": m, "phase": p, "metric": "backdoor_train_acc", "value": v}
                               for m, p, v in (("matching, shared features", "before", 0.4),
                                               ("matching, shared features", "after", 0.3),
                                               ("fine-tuning", "before", 0.9))])
    keyed, control = (0.3, 0.45, 0.6, 0.7), (0.3, 0.3, 0.3, 0.3)
    draws = pd.DataFrame([{"case": "a", "draw": d, "update": u, "metric": "backdoor_train_acc", "value": v}
                          for u, vals in (("keyed images", keyed), ("no keyed images (control)", control))
                          for d, v in enumerate(vals)])
    row = defenses.against_no_attack(draws, comparison).loc["a"]
    assert row["level"] == 0.4 and row["draws"] == 4
    assert row["draws_above"] == sum(v - 0.4 > BACKDOOR_MARGIN for v in keyed) == 2   # 0.6 and 0.7; 0.45 is within
    assert row["max_excess"] == pytest.approx(0.3) and row["mean_excess"] == pytest.approx(np.mean(keyed) - 0.4)
    diff, half = mean_ci95_t(np.subtract(keyed, control))
    assert (row["keyed_minus_control"], row["keyed_minus_control_ci95"]) == pytest.approx((diff, half))


def test_the_t_interval_is_wider_than_the_normal_one_for_few_draws():
    from fmlbd.metrics import mean_ci95, mean_ci95_t

    values = [0.1, 0.3, 0.2, 0.5, 0.4]
    assert mean_ci95_t(values)[0] == mean_ci95(values)[0]
    assert mean_ci95_t(values)[1] == pytest.approx(mean_ci95(values)[1] * 2.776 / 1.96)
    assert mean_ci95_t(list(range(30)))[1] == pytest.approx(mean_ci95(list(range(30)))[1])
    assert np.isnan(mean_ci95_t([0.5])[1])
