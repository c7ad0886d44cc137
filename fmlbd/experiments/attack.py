"""The one-shot attack: the global model right before and after it, over the adversary's draws,
and the no-attack control."""
from __future__ import annotations

from dataclasses import replace

import pandas as pd

from .. import builders, plots
from ..attention import Attention
from ..evaluation import METRICS, attention_key, attack_metrics, metric_rows
from ..runner import prepare
from ..splits import CASES
from .spec import Experiment, check_cases, per_case


def one_shot_attack(cfg, cases=CASES, progress: bool = True, attention: Attention | None = None,
                    phases=("before", "after")) -> pd.DataFrame:
    """The four metrics right before and right after the attack round (with ``attention``: classified
    by the local matching network instead of fine-tuning).

    Tidy rows: case, phase ("before"/"after", those in ``phases``), metric, value, attack_round.
    """
    def compute(att, case):
        out = []
        for phase in phases:
            params = att.before if phase == "before" else att.after
            metrics = attack_metrics(cfg, att.trained.model, params, att.trained.scenario, case, attention=attention)
            out += [r | {"attack_round": att.round} for r in metric_rows(case, "phase", phase, metrics)]
        return pd.DataFrame(out)

    return per_case(cfg, cases, progress, "one-shot", compute, attention=attention_key(attention), phases=list(phases))


def no_attack_level(table: pd.DataFrame, metric: str = "backdoor_train_acc") -> dict[str, float]:
    """Per case, ``metric`` right before the attack: the "before" rows of a :func:`one_shot_attack` table."""
    return table[(table["phase"] == "before") & (table["metric"] == metric)].set_index("case")["value"].to_dict()


def attack_draws(cfg, cases=("a", "b"), progress: bool = True, attention: Attention | None = None) -> pd.DataFrame:
    """The four metrics right after the attack for ``measure.draws`` random draws of the adversary
    (``attack.draw`` = 0, 1, ...): same pre-trained model, same other clients, a different poisoned
    training. One draw is one sample of the attack's outcome; this shows its spread.
    Tidy rows: case, draw, attack_round, metric, value."""
    configs = [replace(cfg, attack=replace(cfg.attack, draw=draw)) for draw in range(cfg.measure.draws)]
    prepare([("attacked", c, case) for c in configs for case in check_cases(cases)], progress)
    tables = []
    for draw, c in enumerate(configs):
        table = one_shot_attack(c, cases, progress, attention, phases=("after",))
        tables.append(table.drop(columns=["phase"]).assign(draw=draw))
    return pd.concat(tables, ignore_index=True)[["case", "draw", "attack_round", "metric", "value"]]


def chance_control(cfg, cases=CASES, progress: bool = True, attention: Attention | None = None) -> pd.DataFrame:
    """Backdoor accuracy of the pre-attack global model on the attack images with and without the
    key (classified by fine-tuning, or by ``attention``). Tidy rows: case, images ("keyed"/"clean"),
    metric, value."""
    def compute(att, case):
        rows = []
        for images in ("keyed", "clean"):
            m = attack_metrics(cfg, att.trained.model, att.before, att.trained.scenario, case, attention=attention,
                               keyed=images == "keyed")
            rows += [{"case": case, "images": images, "metric": k, "value": m[k]}
                     for k in ("backdoor_train_acc", "backdoor_val_acc")]
        return pd.DataFrame(rows)

    return per_case(cfg, cases, progress, "chance", compute, attention=attention_key(attention))


def boost_effect(cfg, cases=("a", "b"), progress: bool = True) -> pd.DataFrame:
    """Right after the attack, with the adversary's update boosted as configured (``attack.boost``;
    default: the buffer size) and not boosted (1): how much of the backdoor the boost plants.
    Tidy rows: case, boost, attack_round, metric, value."""
    runs = ((1.0, replace(cfg, attack=replace(cfg.attack, boost=1.0))),
            (builders.boost(cfg), cfg))
    tables = [one_shot_attack(c, cases, progress, phases=("after",)).drop(columns="phase").assign(boost=boost)
              for boost, c in runs]
    return pd.concat(tables, ignore_index=True)[["case", "boost", "attack_round", "metric", "value"]]


def _by_case_phase(table: pd.DataFrame, cfg) -> dict[str, float]:
    v = table.set_index(["case", "phase", "metric"])["value"]
    return {f"{m}_{phase}_{case}": v[case, phase, m] for case in sorted(set(table["case"]))
            for phase in ("before", "after") for m in METRICS}


ONE_SHOT = Experiment(
    "one-shot", "attack", "the four metrics right before and right after the boosted one-shot attack",
    one_shot_attack, index=("case", "phase"),
    figure=lambda t, cfg, path: plots.before_after_bars(t, "Global model right before and after the one-shot attack",
                                                        path, note=plots.episodes_note(cfg.eval.episodes, "bar")),
    headlines=_by_case_phase)

CHANCE = Experiment(
    "chance", "attack", "no-attack control: backdoor accuracy of the pre-attack model on keyed vs clean attack images",
    chance_control, index=("case", "images"), default=False)

DRAWS = Experiment(
    "draws", "attack", "right after the attack, for each of measure.draws draws of the adversary",
    attack_draws, cases=("a", "b"), index=("case", "draw"), default=False)

BOOST = Experiment(
    "boost", "attack", "right after the attack, the update boosted (attack.boost) and not boosted (1)",
    boost_effect, cases=("a", "b"), index=("case", "boost"), default=False)
