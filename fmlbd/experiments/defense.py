"""The local matching-network defense: with and without it, over draws, against an adaptive
adversary, over rounds, its attention kernels, and its cost."""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pandas as pd
from tqdm import tqdm

from .. import plots
from ..attention import Attention
from ..builders import attack_sets, default_attention
from ..config import ExperimentConfig
from ..defense import MatchingNetworkDefense
from ..evaluation import METRICS, adapter, backdoor_test_episodes, main_episodes
from ..metrics import (BACKDOOR_MARGIN, BACKDOOR_METRICS, MAIN_TASK_MARGIN, accuracy, backdoor_batch, mean_ci95_t,
                       score_backdoor_predictions)
from ..parallel import pmap
from ..pipeline import attack
from ..runner import prepare
from ..splits import CASES
from .attack import attack_draws, no_attack_level, one_shot_attack
from .persistence import dampening
from .spec import Experiment, check_cases, per_case


def defended_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """The config of the federation that the defense runs on (``defense.shared_model``).

    "features": the same federation, attack and seed, but every client, the adversary included,
    trains with the matching-network objective (``meta.algorithm="matching"``,
    ``defense.train_inner_steps`` SGD steps per episode of ``defense.train_shots`` shots): the
    shared model has no decision layer, so neither has the poisoned update. "head": ``cfg``
    itself (the undefended, head-trained federation).
    """
    d = cfg.defense
    if d.shared_model == "head":
        return cfg
    return replace(cfg, meta=replace(cfg.meta, algorithm="matching", inner_steps=d.train_inner_steps,
                                     shots=d.train_shots))


def main_task_floor(comparison: pd.DataFrame) -> dict[str, float]:
    """Per case, the undefended ("fine-tuning") model's main-task accuracy right before the attack
    minus :data:`~fmlbd.metrics.MAIN_TASK_MARGIN` (``comparison``: a :func:`defense_comparison` table)."""
    pre = comparison[(comparison["phase"] == "before") & (comparison["method"] == "fine-tuning")
                     & (comparison["metric"] == "main_task_acc")].set_index("case")["value"]
    return (pre - MAIN_TASK_MARGIN).to_dict()


def defense_comparison(cfg, cases=CASES, progress: bool = True, attention: Attention | None = None) -> pd.DataFrame:
    """The four metrics right before and after the attack, for three ways of classifying:

    - "fine-tuning": the undefended federation (shared head), standard meta-test fine-tuning;
    - "matching, shared head": the local matching network on that same head-trained model
      (its decision layer ignored at meta-test only);
    - "matching, shared features": the defense, the local matching network on the model of a
      federation that shares features only (:func:`defended_config`).

    With ``defense.shared_model="head"`` the last two coincide and only the first two are run.
    Tidy rows: case, phase, method, metric, value.
    """
    attention = attention or default_attention(cfg)
    defended = defended_config(cfg)
    prepare([("attacked", c, case) for c in dict.fromkeys((cfg, defended)) for case in check_cases(cases)], progress)
    tables = [one_shot_attack(cfg, cases, progress).assign(method="fine-tuning"),
              one_shot_attack(cfg, cases, progress, attention).assign(method="matching, shared head")]
    if defended != cfg:
        tables.append(one_shot_attack(defended, cases, progress, attention).assign(method="matching, shared features"))
    return pd.concat(tables, ignore_index=True)


def defense_draws(cfg, cases=("a", "b"), progress: bool = True) -> pd.DataFrame:
    """:func:`~fmlbd.experiments.attack.attack_draws` of the defended federation (classified by the
    local matching network) for the protocol's attack ("keyed images") and for a control that
    differs only in carrying no keyed images (``attack.poison_per_episode=0``: the same boosted
    update of ``attack.attack_iterations`` steps, target class in every episode). The control
    separates what the update's size does to the shared features from what the poison does.
    Tidy rows: case, draw, attack_round, metric, value, update."""
    defended, attention = defended_config(cfg), default_attention(cfg)
    control = replace(defended, attack=replace(defended.attack, poison_per_episode=0))
    return pd.concat([attack_draws(defended, cases, progress, attention).assign(update="keyed images"),
                      attack_draws(control, cases, progress, attention).assign(update="no keyed images (control)")],
                     ignore_index=True)


def adaptive_attack(cfg, cases=("a", "b"), progress: bool = True) -> pd.DataFrame:
    """The defense against an adversary who knows it: the defended federation's four metrics
    right after an attack that puts keyed images only among its queries
    (``attack.poison_support=False``), so its training matches them to *clean* target images,
    as a user's support set will. Tidy rows as :func:`one_shot_attack` (phase "after")."""
    adaptive = defended_config(replace(cfg, attack=replace(cfg.attack, poison_support=False)))
    return one_shot_attack(adaptive, cases, progress, default_attention(cfg), phases=("after",))


def defense_over_rounds(cfg, cases=CASES, progress: bool = True) -> pd.DataFrame:
    """:func:`~fmlbd.experiments.persistence.dampening` of the defended federation, evaluated with
    the local matching network."""
    return dampening(defended_config(cfg), cases, progress, attention=default_attention(cfg))


def attention_ablation(cfg, cases=("a", "b"), progress: bool = True) -> pd.DataFrame:
    """The four metrics of the defended federation's model right after the attack under every
    kernel x temperature of ``cfg.defense``, on the episodes of the one-shot experiment with each of
    ``defense.ablation_shots`` support images per class (with one, every kernel picks the most
    similar support image). Each episode's features are computed once and every kernel reads them.
    Tidy rows: shots, kernel, temperature, case, metric, value."""
    d = cfg.defense
    cfg = defended_config(cfg)
    grid = [Attention(k, t, d.k) for k in d.ablation_kernels for t in d.ablation_temperatures]

    def compute(att, case):
        model, scenario, params = att.trained.model, att.trained.scenario, att.after
        sets, rows = attack_sets(cfg, scenario), []
        def main_task(ep) -> list[float]:
            defense = MatchingNetworkDefense(model, params, ep.support_x, ep.support_y)
            return [accuracy(pred, ep.query_y) for pred in defense.predict_each(ep.query_x, grid)]

        def backdoor(ep) -> list[list[float]]:
            defense = MatchingNetworkDefense(model, params, ep.support_x, ep.support_y)
            images, sizes = backdoor_batch(ep, sets, case)
            scores = [score_backdoor_predictions(pred, sizes, ep, scenario.target_class)
                      for pred in defense.predict_each(images, grid)]
            return [[s[m] for m in BACKDOOR_METRICS] for s in scores]

        for shots in d.ablation_shots:
            if progress:
                tqdm.write(f"ablation case ({case}), {shots}-shot: {len(grid)} kernels on {cfg.eval.episodes} x 2 "
                           f"episodes")
            sums = np.zeros((len(grid), len(METRICS)))
            for row in pmap(main_task, main_episodes(cfg, scenario, shots)):  # side by side, summed in order
                sums[:, 0] += row
            for rows_ in pmap(backdoor, backdoor_test_episodes(cfg, scenario, case, shots)):
                sums[:, 1:] += rows_
            means = sums / cfg.eval.episodes
            rows += [{"shots": shots, "kernel": a.kernel, "temperature": a.temperature, "case": case, "metric": m,
                      "value": means[i, j]} for i, a in enumerate(grid) for j, m in enumerate(METRICS)]
        return pd.DataFrame(rows)

    return per_case(cfg, cases, progress, "ablation", compute)


def inference_cost(cfg, cases=("a",), progress: bool = True) -> pd.DataFrame:
    """Wall time to adapt to and classify one query episode (support + N*Q queries) with fine-tuning
    (``eval.finetune_steps`` steps, undefended model) and with the matching-network defense (defended
    model), in the first of ``cases``. Tidy rows: method, episodes, seconds_per_episode."""
    rows = []
    for method, c, attention in (("fine-tuning", cfg, None),
                                 ("matching network", defended_config(cfg), default_attention(cfg))):
        att = attack(c, cases[0], progress)
        eps = main_episodes(c, att.trained.scenario, episodes=c.defense.cost_episodes)
        adapt = adapter(c, att.trained.model, att.after, attention)
        start = time.perf_counter()
        for ep in eps:
            adapt(ep)(ep.query_x)
        rows.append({"method": method, "episodes": len(eps),
                     "seconds_per_episode": (time.perf_counter() - start) / len(eps)})
    return pd.DataFrame(rows)


def _comparison_headlines(table, cfg) -> dict[str, float]:
    d = table.set_index(["case", "method", "phase", "metric"])["value"]
    return {f"{m}_defended_{p}_{c}": d[c, "matching, shared features", p, m]
            for c in sorted(set(table["case"])) for p in ("before", "after") for m in METRICS}


def draws_spread(draws: pd.DataFrame) -> pd.DataFrame:
    """Mean, min and max over the draws of a :func:`defense_draws` table, per case, update and metric."""
    return draws.groupby(["case", "update", "metric"])["value"].agg(["mean", "min", "max"])


def against_no_attack(draws: pd.DataFrame, comparison: pd.DataFrame, metric: str = "backdoor_train_acc") -> pd.DataFrame:
    """Per case, the defended federation's ``metric`` right after the attack measured against its own
    no-attack level (the defended model before the attack, from ``comparison``) over the draws of
    ``draws`` (a :func:`defense_draws` table): the level, the mean excess over it, how many draws
    exceed it by more than :data:`~fmlbd.metrics.BACKDOOR_MARGIN` and the highest excess; and
    the keyed update minus its control, paired by draw: mean and Student-t 95% half-width.
    Rows: case; columns: level, mean_excess, draws_above, draws, max_excess, keyed_minus_control,
    keyed_minus_control_ci95."""
    level = defended_level(comparison, metric)
    v = draws[draws["metric"] == metric].pivot_table(index=["case", "draw"], columns="update", values="value")
    rows = []
    for case in dict.fromkeys(draws["case"]):
        keyed, control = v.loc[case, "keyed images"], v.loc[case, "no keyed images (control)"]
        excess = keyed - level[case]
        diff, half = mean_ci95_t(keyed - control)
        rows.append({"case": case, "level": level[case], "mean_excess": excess.mean(),
                     "draws_above": int((excess > BACKDOOR_MARGIN).sum()), "draws": len(excess),
                     "max_excess": excess.max(), "keyed_minus_control": diff, "keyed_minus_control_ci95": half})
    return pd.DataFrame(rows).set_index("case")


def _draws_headlines(table, cfg) -> dict[str, float]:
    return {f"{m}_{'defended' if u == 'keyed images' else 'no_key_control'}_{s}_over_draws_{c}": v
            for (c, u, m), row in draws_spread(table).iterrows() for s, v in row.items()}


def defended_level(comparison: pd.DataFrame, metric: str = "backdoor_train_acc") -> dict[str, float]:
    """Per case, the defended model's ``metric`` right before the attack."""
    return no_attack_level(comparison[comparison["method"] == "matching, shared features"], metric)


def _draws_figure(table, cfg, path):
    comparison = defense_comparison(cfg, tuple(sorted(set(table["case"]))), progress=False)
    return plots.draws_scatter(table, f"Defended federation right after the attack, {cfg.measure.draws} draws of "
                                      f"the adversary", path, main_task_floor(comparison), group="update",
                               note=f"one point per draw, each a mean over {cfg.eval.episodes} evaluation episodes",
                               no_attack=defended_level(comparison))


def _rounds_figure(table, cfg, path):
    comparison = defense_comparison(cfg, tuple(sorted(set(table["case"]))), progress=False)
    return plots.curves_by_case(table, "round", "benign rounds after the attack", "Defended federation after the attack",
                                path, 1 / cfg.eval.ways, note=plots.episodes_note(cfg.measure.curve_episodes),
                                no_attack=defended_level(comparison))


DEFENSE = Experiment(
    "defense", "defend", "right before / after the attack: fine-tuning vs matching on the shared head vs the defense",
    defense_comparison, index=("case", "phase", "method"),
    figure=lambda t, cfg, path: plots.before_after_bars(
        t[t["phase"] == "after"], "Right after the attack: fine-tuning vs local matching networks", path,
        phase_col="method", note=plots.episodes_note(cfg.eval.episodes, "bar")),
    headlines=_comparison_headlines)

DEFENSE_DRAWS = Experiment(
    "defense-draws", "defend", "the defended federation right after the attack, over measure.draws draws, with a "
                               "no-key control", defense_draws, cases=("a", "b"), index=("case", "update", "draw"),
    figure=_draws_figure, headlines=_draws_headlines)

ADAPTIVE = Experiment(
    "adaptive", "defend", "an adversary who knows the defense (keyed images only among its queries)",
    adaptive_attack, cases=("a", "b"), index=("case", "phase"),
    headlines=lambda t, cfg: {f"{r.metric}_adaptive_after_{r.case}": r.value for r in t.itertuples()})

ABLATION = Experiment(
    "ablation", "defend", "attention kernel x temperature x shots of the local matching network",
    attention_ablation, cases=("a", "b"), index=("shots", "kernel", "temperature", "case"))

DEFENSE_ROUNDS = Experiment(
    "defense-rounds", "defend", "the defended federation over the benign rounds after the attack",
    defense_over_rounds, index=("case", "round"), figure=_rounds_figure)

COST = Experiment(
    "cost", "defend", "inference cost per query episode: fine-tuning vs matching network",
    inference_cost, cases=("a",), index=(),
    headlines=lambda t, cfg: {f"seconds_per_episode_{r.method.replace(' ', '_')}": r.seconds_per_episode
                              for r in t.itertuples()})
