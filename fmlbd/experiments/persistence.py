"""Does the backdoor persist? Benign federated rounds after the attack, and a user fine-tuning it."""
from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm import tqdm

from .. import plots
from ..attention import Attention
from ..builders import attack_sets
from ..evaluation import METRICS, attention_key, attack_metrics, backdoor_test_episodes, main_episodes, metric_rows
from ..functional import predict, support_buffers
from ..meta import finetune
from ..metrics import BACKDOOR_METRICS, accuracy, score_backdoor_episode
from ..parallel import pmap
from ..results import first_below
from ..runner import Table, run
from ..splits import CASES
from .attack import no_attack_level, one_shot_attack
from .spec import Experiment, check_cases, per_case


def dampening(cfg, cases=CASES, progress: bool = True, attention: Attention | None = None) -> pd.DataFrame:
    """The four metrics after each ``measure.curve_every`` rounds of benign federated training
    following the attack, for ``measure.dampening_rounds`` rounds (``measure.curve_episodes``
    episodes per point); with ``attention``, classified by the local matching network.

    Tidy rows: case, round (rounds since the attack round; 0 = right after it), metric, value.
    """
    def compute(dampened, case):
        trained, out = dampened.attacked.trained, []
        for r, params in dampened.snapshots.items():
            metrics = attack_metrics(cfg, trained.model, params, trained.scenario, case, cfg.measure.curve_episodes,
                                     attention)
            out += metric_rows(case, "round", r, metrics)
        return pd.DataFrame(out)

    return per_case(cfg, cases, progress, "dampening", compute, "dampened", attention=attention_key(attention))


def finetune_steps_scored(cfg) -> list[int]:
    """Steps after which the fine-tuning experiment scores the model: 0 (before), each of the
    first 10, then every ``measure.finetune_eval_every``-th, and the last."""
    ms = cfg.measure
    last = ms.finetune_max_steps
    return sorted({*range(min(10, last) + 1), *range(0, last + 1, ms.finetune_eval_every), last})


def _finetune_curve(cfg, model, params, episodes, score, columns, desc, progress) -> pd.DataFrame:
    """One row per scored step: the means over ``episodes`` of ``score(episode, params)`` (one value
    per column) while each episode fine-tunes ``params`` for ``measure.finetune_max_steps`` steps."""
    steps = finetune_steps_scored(cfg)
    row = {step: i for i, step in enumerate(steps)}

    def curve(ep) -> np.ndarray:
        scores = np.zeros((len(steps), len(columns)))

        def on_step(step, p):
            if step in row:
                scores[row[step]] = score(ep, p)

        on_step(0, params)
        finetune(model, params, ep.support_x, ep.support_y, cfg.measure.finetune_max_steps, cfg.eval.finetune_lr,
                 on_step=on_step)
        return scores

    if progress:
        tqdm.write(f"{desc}: {len(episodes)} episodes x {cfg.measure.finetune_max_steps} steps")
    sums = np.zeros((len(steps), len(columns)))
    for scores in pmap(curve, episodes):  # episodes side by side, summed in order
        sums += scores
    return pd.DataFrame(sums / len(episodes), columns=columns).assign(step=steps)


def finetune_failure(cfg, cases=CASES, progress: bool = True) -> pd.DataFrame:
    """The poisoned global model (right after the attack), fine-tuned on one episode for
    ``measure.finetune_max_steps`` steps; the metrics after the steps of :func:`finetune_steps_scored`,
    averaged over ``measure.finetune_trials`` episodes. Main-task accuracy follows a benign
    meta-test episode fine-tuned the same way (shared by cases that share the attacked model).

    Tidy rows: case, step (0 = before fine-tuning), metric, value.
    """
    trials = cfg.measure.finetune_trials

    def main_curve(att, case):
        model, scenario = att.trained.model, att.trained.scenario

        def score(ep, p):
            return accuracy(predict(model, p, support_buffers(model, p, ep.support_x), ep.query_x), ep.query_y)
        return _finetune_curve(cfg, model, att.after, main_episodes(cfg, scenario, episodes=trials), score,
                               ["main_task_acc"], "fine-tuning, main task", progress)

    def backdoor_curve(att, case):
        model, scenario = att.trained.model, att.trained.scenario
        sets = attack_sets(cfg, scenario)

        def score(ep, p):
            buffers = support_buffers(model, p, ep.support_x)
            s = score_backdoor_episode(lambda x: predict(model, p, buffers, x), ep, sets, scenario.target_class, case)
            return [s[m] for m in BACKDOOR_METRICS]

        eps = backdoor_test_episodes(cfg, scenario, case, episodes=trials)
        return _finetune_curve(cfg, model, att.after, eps, score, list(BACKDOOR_METRICS), f"fine-tuning case ({case})",
                               progress)

    cases = check_cases(cases)  # the main task's curve does not depend on the case: (a) and (c) share it
    curves = run([Table(name, "attacked", cfg, case, compute, key) for case in cases for name, compute, key in (
        ("finetune-main", main_curve, {}), ("finetune-backdoor", backdoor_curve, {"case": case}))], progress)
    tables = []
    for case, main, backdoor in zip(cases, curves[::2], curves[1::2]):
        wide = main.merge(backdoor, on="step")
        tables.append(wide.melt(id_vars="step", value_vars=list(METRICS), var_name="metric").assign(case=case)
                      [["case", "step", "metric", "value"]])
    return pd.concat(tables, ignore_index=True)


def _dampening_headlines(table: pd.DataFrame, cfg) -> dict[str, float]:
    below = first_below(table, "round", "backdoor_train_acc", 0.5)
    last = table[table["round"] == table["round"].max()].set_index(["case", "metric"])["value"]
    return ({f"rounds_to_below_0.5_{c}": r for c, r in below.items()}
            | {f"{m}_final_{c}": last[c, m] for c in sorted(set(table["case"])) for m in METRICS})


def _finetune_headlines(table: pd.DataFrame, cfg) -> dict[str, float]:
    last = cfg.measure.finetune_max_steps
    end = table[table["step"] == last].set_index(["case", "metric"])["value"]
    return {f"{m}_step{last}_{c}": end[c, m] for c in sorted(set(table["case"])) for m in METRICS}


DAMPENING = Experiment(
    "dampening", "attack", "the four metrics over the benign rounds after the attack",
    dampening, index=("case", "round"),
    figure=lambda t, cfg, path: plots.curves_by_case(
        t, "round", "benign rounds after the attack", "Federated dampening of a one-shot backdoor", path,
        1 / cfg.eval.ways, note=plots.episodes_note(cfg.measure.curve_episodes),
        no_attack=no_attack_level(one_shot_attack(cfg, tuple(sorted(set(t["case"]))), progress=False))),
    headlines=_dampening_headlines)

FINETUNE = Experiment(
    "finetune", "attack", "the poisoned model fine-tuned on one episode for measure.finetune_max_steps steps",
    finetune_failure, index=("case", "step"),
    figure=lambda t, cfg, path: plots.curves_by_case(t, "step", "fine-tuning steps on one episode (log scale past 10)",
                                                     "Fine-tuning a poisoned local model", path, 1 / cfg.eval.ways,
                                                     note=plots.episodes_note(cfg.measure.finetune_trials),
                                                     log_x=True),
    headlines=_finetune_headlines)
