"""Server-side defenses: the buffered server's aggregation rule (:mod:`fmlbd.aggregation`) against the
protocol's attack and against adversaries who know the rule, and what each rule costs without attack."""
from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from .. import plots
from ..aggregation import AGGREGATIONS
from ..labels import NO_ATTACK, RIGHT_AFTER
from ..config import ExperimentConfig, with_overrides
from ..evaluation import attack_metrics, main_task_accuracies, metric_rows
from ..metrics import BACKDOOR_MARGIN, MAIN_TASK_MARGIN, mean_ci95
from ..pipeline import pretrain
from ..runner import Table, prepare, run
from .spec import Experiment, check_cases

#: the rules compared (a trimmed mean that drops one update at each end is, with 3 updates per
#: round, the coordinate-wise median: same step, so it is not run twice)
RULES = ("mean", "norm_clip", "median", "multi_krum", "flame")

#: the adversaries: name -> the attack settings that make it (``attack.*``; see fmlbd.evasion)
ATTACKS: dict[str, dict] = {
    # the protocol's: one poisoned update, boosted by the buffer size
    "boosted": {},
    # the same update scaled to just under a norm bound fitted to benign updates
    "under the bound": {"attack.norm_cap": 0.95},
    # the same poisoned training in 5 consecutive updates, none boosted
    "spread": {"attack.boost": 1.0, "attack.poison_rounds": 5},
    # 5 boosted updates, each held coordinate-wise within one standard deviation of benign ones
    "disguised": {"attack.poison_rounds": 5, "attack.disguise_z": 1.0},
}

#: each adversary that knows the rule, against the rules it was built to pass and, for two, the plain mean
#: (what their updates can plant at all; notebook 07); every adversary against every rule:
#: ``server_rules(cfg, pairs=FULL_GRID)`` (benchmarks/server_rules_grid.py)
TARGETED = {"under the bound": ("mean", "norm_clip"), "spread": ("mean", "flame"), "disguised": ("median", "multi_krum")}
FULL_GRID = {name: RULES for name in ATTACKS}


def rule_config(cfg: ExperimentConfig, rule: str, attack_name: str = "boosted", draw: int = 0) -> ExperimentConfig:
    """``cfg`` with the server's rule ``rule``, the adversary ``attack_name`` of :data:`ATTACKS` in its
    draw ``draw``, followed by ``measure.rule_rounds`` benign rounds, the global model kept only right
    after the attack and at their end."""
    m = cfg.measure
    return with_overrides(cfg, {"federation.aggregation": rule, "attack.draw": draw, "measure.dampening_rounds":
                                m.rule_rounds, "measure.curve_every": m.rule_rounds} | ATTACKS[attack_name])


def server_rules(cfg, cases=("a", "b"), progress: bool = True, pairs: dict | None = None) -> pd.DataFrame:
    """The four metrics (``measure.curve_episodes`` episodes each; main-task accuracy only with
    ``measure.rule_main_task``: the notebooks show each rule's from :func:`rule_cost`) of the global model of federations
    whose server aggregates with a rule of :data:`~fmlbd.aggregation.AGGREGATIONS`, for each adversary of
    ``pairs`` (name of :data:`ATTACKS` -> the rules it is run against; default: the protocol's attack
    against every rule of :data:`RULES`): before any attack ("no attack": the pre-trained model),
    right after the attack and after ``measure.rule_rounds`` benign rounds under the same rule, for
    ``measure.rule_draws`` draws of the adversary. The federation runs its rule from the first round
    on: pre-training, attack and the rounds after it.

    Tidy rows: case, rule, attack ("none" for no attack), draw, phase, metric, value.
    """
    cases = check_cases(cases)
    pairs = pairs or {"boosted": RULES}
    unknown = [a for a in pairs if a not in ATTACKS] + [r for rs in pairs.values() for r in rs if r not in AGGREGATIONS]
    if unknown:
        raise ValueError(f"unknown adversaries or rules {unknown}: choose from {list(ATTACKS)} and {list(AGGREGATIONS)}")
    rules = [r for r in AGGREGATIONS if any(r in rs for rs in pairs.values())]
    configs = {(r, a, d): rule_config(cfg, r, a, d) for a, rs in pairs.items() for r in rs
               for d in range(cfg.measure.rule_draws)}
    end = f"after {cfg.measure.rule_rounds} rounds"

    def no_attack(rule, trained, case):
        m = attack_metrics(cfg, trained.model, trained.params, trained.scenario, case, cfg.measure.curve_episodes,
                           main_task=cfg.measure.rule_main_task)
        return pd.DataFrame(metric_rows(case, "phase", NO_ATTACK, m)).assign(rule=rule, attack="none", draw=0)

    def after(rule, name, draw, c, dampened, case):
        trained, rows = dampened.attacked.trained, []
        snapshots = dampened.snapshots
        for phase, params in ((RIGHT_AFTER, snapshots[0]), (end, snapshots[c.measure.dampening_rounds])):
            m = attack_metrics(c, trained.model, params, trained.scenario, case, c.measure.curve_episodes,
                               main_task=c.measure.rule_main_task)
            rows += metric_rows(case, "phase", phase, m)
        return pd.DataFrame(rows).assign(rule=rule, attack=name, draw=draw)

    tables = []
    for case in cases:
        tables += [Table("rule-no-attack", "pretrained", cfg, case, partial(no_attack, rule), {"case": case},
                         rule_config(cfg, rule)) for rule in rules]
        tables += [Table("rule-attack", "dampened", cfg, case, partial(after, *run_of, c), {"case": case}, c)
                   for run_of, c in configs.items()]
    return pd.concat(run(tables, progress), ignore_index=True)[["case", "rule", "attack", "draw", "phase", "metric",
                                                                 "value"]]


def rule_cost(cfg, cases=("a", "b"), progress: bool = True, rules=RULES) -> pd.DataFrame:
    """What each rule costs without any attack: the pre-trained model's main-task accuracy
    (``eval.episodes`` episodes, mean and 95% CI half-width) and, from the pre-training log, the
    first logged round (every ``eval.log_every``) whose accuracy reached the plain mean's final
    logged accuracy (NaN: never within ``federation.rounds``).

    Tidy rows: case, rule, metric ("main_task_acc", "main_task_ci95", "rounds_to_mean_acc"), value.
    """
    cases = check_cases(cases)
    prepare([("pretrained", rule_config(cfg, rule), case) for rule in dict.fromkeys(("mean", *rules))
             for case in cases], progress)

    def compute(rule, goal, trained, case):
        acc, half = mean_ci95(main_task_accuracies(cfg, trained.model, trained.params, trained.scenario))
        log = trained.log.sort_values("round")
        reached = log[log["value"] >= goal]["round"]
        return pd.DataFrame([{"case": case, "rule": rule, "metric": m, "value": v} for m, v in (
            ("main_task_acc", acc), ("main_task_ci95", half),
            ("rounds_to_mean_acc", float(reached.iloc[0]) if len(reached) else np.nan))])

    tables = []
    for case in cases:
        goal = pretrain(rule_config(cfg, "mean"), case, progress).log.sort_values("round")["value"].iloc[-1]
        tables += [Table("rule-cost", "pretrained", cfg, case, partial(compute, rule, goal),
                         {"case": case, "goal": goal}, rule_config(cfg, rule)) for rule in rules]
    return pd.concat(run(tables, progress), ignore_index=True)


def spread(table: pd.DataFrame) -> pd.DataFrame:
    """Mean, min and max over the draws of a :func:`server_rules` table, per case, rule, attack, phase and metric."""
    return table.groupby(["case", "rule", "attack", "phase", "metric"], sort=False)["value"].agg(["mean", "min", "max"])


def excess(stats: pd.DataFrame, case: str, rule: str, attack: str, phase: str = RIGHT_AFTER,
           metric: str = "backdoor_train_acc") -> pd.Series:
    """``metric`` of ``attack`` under ``rule`` at ``phase`` minus the rule's no-attack level (its mean over
    the draws): mean, min and max over the draws. ``stats``: a :func:`spread` table."""
    return stats.loc[(case, rule, attack, phase, metric)] - stats.loc[(case, rule, "none", NO_ATTACK, metric), "mean"]


def stopping_rules(table: pd.DataFrame, cost: pd.DataFrame, attack_name: str = "boosted") -> pd.DataFrame:
    """Per case and rule: does the rule stop ``attack_name``? It does when, right after the attack,
    backdoor accuracy (attack training set, mean over draws) is at most
    :data:`~fmlbd.metrics.BACKDOOR_MARGIN` above the rule's no-attack level and its pre-trained
    model's main task at most :data:`~fmlbd.metrics.MAIN_TASK_MARGIN` below the plain mean's. Columns:
    case, rule, backdoor_excess (right after the attack minus no attack, attack training set, mean
    over draws), main_task_gap (pre-trained main task minus the plain mean's), stops (bool)."""
    s = spread(table)
    main = cost[cost["metric"] == "main_task_acc"].set_index(["case", "rule"])["value"]
    rows = []
    for case, rule in dict.fromkeys(zip(table["case"], table["rule"])):
        above = excess(s, case, rule, attack_name)["mean"]
        gap = main[case, rule] - main[case, "mean"]
        rows.append({"case": case, "rule": rule, "backdoor_excess": above, "main_task_gap": gap,
                     "stops": bool(above <= BACKDOOR_MARGIN and gap >= -MAIN_TASK_MARGIN)})
    return pd.DataFrame(rows)


def overview(table: pd.DataFrame, cost: pd.DataFrame, comparison: pd.DataFrame, defense_draws: pd.DataFrame,
             adaptive: pd.DataFrame) -> pd.DataFrame:
    """Every server-side rule of ``table`` next to the local matching-network defense (notebook 05's
    ``defense``, ``defense-draws`` and ``adaptive`` tables): where it runs, what it must see, and per
    case the backdoor accuracy (attack training set) above the no-attack level right after the
    protocol's attack (mean and highest draw) and after the strongest adversary that knows the
    defense (mean over draws; NaN: none in ``table``), and the main-task cost against the plain mean
    (server rules) or against fine-tuning the undefended federation (local defense), before any
    attack. Rows: defense, case."""
    s = spread(table)
    main = cost[cost["metric"] == "main_task_acc"].set_index(["case", "rule"])["value"]
    c = comparison.set_index(["case", "method", "phase", "metric"])["value"]
    drawn = defense_draws[(defense_draws["update"] == "keyed images") & (defense_draws["metric"] == "backdoor_train_acc")]
    drawn = drawn.groupby("case")["value"].agg(["mean", "max"])
    adapt = adaptive.set_index(["case", "metric"])["value"]
    attacks = [a for a in dict.fromkeys(table["attack"]) if a not in ("none", "boosted")]
    bd = "backdoor_train_acc"
    rows = []
    for case in dict.fromkeys(table["case"]):
        for rule in dict.fromkeys(table["rule"]):
            protocol = excess(s, case, rule, "boosted")
            adaptive_excess = {a: excess(s, case, rule, a)["mean"] for a in attacks
                               if (case, rule, a, RIGHT_AFTER, bd) in s.index}
            best = max(adaptive_excess, key=adaptive_excess.get) if adaptive_excess else ""
            rows.append({"defense": rule.replace("_", " "), "case": case, "runs at": "server",
                         "sees": AGGREGATIONS[rule].sees, "protocol attack": protocol["mean"],
                         "protocol attack, highest draw": protocol["max"],
                         "strongest adaptive": adaptive_excess.get(best, np.nan), "which": best,
                         "main-task cost": main[case, "mean"] - main[case, rule]})
        level = c[case, "matching, shared features", "before", bd]
        rows.append({"defense": "local matching network", "case": case, "runs at": "each user",
                     "sees": "its own support set and the global model",
                     "protocol attack": drawn.loc[case, "mean"] - level,
                     "protocol attack, highest draw": drawn.loc[case, "max"] - level,
                     "strongest adaptive": adapt[case, bd] - level, "which": "keyed images only among its queries",
                     "main-task cost": c[case, "fine-tuning", "before", "main_task_acc"]
                     - c[case, "matching, shared features", "before", "main_task_acc"]})
    return pd.DataFrame(rows)


def spread_cells(table: pd.DataFrame, metric: str = "backdoor_train_acc") -> pd.DataFrame:
    """``metric`` of a :func:`server_rules` table as "mean (lowest-highest draw)" text, rows case, rule,
    attack, one column per phase (for reading, not for computing)."""
    s = spread(table).xs(metric, level="metric")
    text = s.apply(lambda r: f"{r['mean']:.2f}" + (f" ({r['min']:.2f}-{r['max']:.2f})" if r["max"] > r["min"] else ""),
                   axis=1)
    return text.unstack("phase").fillna("")[list(dict.fromkeys(table["phase"]))]


def _headlines(table, cfg) -> dict[str, float]:
    s = spread(table)["mean"]
    return {f"backdoor_train_acc_{a.replace(' ', '_')}_{p.replace(' ', '_')}_{r}_{c}": v
            for (c, r, a, p, m), v in s.items() if m == "backdoor_train_acc"}


def _bars_note(cfg) -> str:
    m = cfg.measure
    return (f"bars: mean over {m.rule_draws} draws of the adversary, each {m.curve_episodes} evaluation episodes; "
            f"whiskers: lowest to highest draw; black line: the rule's level without attack")


SERVER_RULES = Experiment(
    "server-rules", "defend", "the protocol's attack against each server-side rule: no attack, right after, after "
                              "the benign rounds (measure.rule_draws draws)",
    server_rules, cases=("a", "b"), index=("case", "rule", "attack", "phase"),
    figure=lambda t, cfg, path: plots.rule_attack_bars(t, "Server-side rules against the protocol's attack", path,
                                                       note=_bars_note(cfg)),
    headlines=_headlines, default=False)

RULE_ADAPTIVE = Experiment(
    "rule-adaptive", "defend", "adversaries who know the rule, against the rules they were built to pass",
    lambda cfg, cases, progress: server_rules(cfg, cases, progress, TARGETED), cases=("a", "b"),
    index=("case", "rule", "attack", "phase"),
    figure=lambda t, cfg, path: plots.rule_attack_bars(t, "Adversaries who know the server's rule", path,
                                                       note=_bars_note(cfg)),
    headlines=_headlines, default=False)

RULE_COST = Experiment(
    "rule-cost", "defend", "what each server-side rule costs without attack (main task, rounds to the mean's)",
    rule_cost, cases=("a", "b"), index=("case", "rule"),
    headlines=lambda t, cfg: {f"{r.metric}_{r.rule}_{r.case}": r.value for r in t.itertuples()}, default=False)
