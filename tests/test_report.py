"""Interpretations state the numbers of the tables they are given, and the conclusions those numbers support."""
import pandas as pd

from fmlbd import report
from fmlbd.evaluation import METRICS


def one_shot_table(after_train):
    rows = []
    for case, value in after_train.items():
        for phase in ("before", "after"):
            for m in METRICS:
                v = value if (phase, m) == ("after", "backdoor_train_acc") else 0.5
                rows.append({"case": case, "phase": phase, "metric": m, "value": v, "attack_round": 7})
    return pd.DataFrame(rows)


def test_one_shot_report_renders_the_table_and_does_not_rank_the_cases_on_one_draw():
    for after in ({"a": 0.943, "b": 0.861, "c": 0.834}, {"a": 0.5, "b": 0.3, "c": 0.9}):
        text = report.one_shot(one_shot_table(after))
        assert "does not rank the cases" in text and "least successful" not in text
    assert "0.94 (a), 0.86 (b) and 0.83 (c)" in report.one_shot(one_shot_table({"a": 0.943, "b": 0.861, "c": 0.834}))


def test_dampening_report_finds_when_the_backdoor_first_falls_below_the_threshold():
    rows = [{"case": c, "round": r, "metric": m, "value": v}
            for c, curve in {"a": [0.9, 0.8, 0.7], "c": [0.9, 0.4, 0.6]}.items()
            for r, v in zip((0, 10, 20), curve) for m in ("backdoor_train_acc", "backdoor_val_acc")]
    text = report.dampening(pd.DataFrame(rows))
    assert "never falls below 0.5 within the run in case (a)" in text and "at round 10 (c)" in text
    assert "at least 0.70 (a) and 0.40 (c)" in text and "0.70 (a) and 0.60 (c) at round 20" in text


def rule_table(excess):
    """A server-rule table (case a): no-attack level 0.3, each (adversary, rule) at 0.3 + its excess in both draws."""
    rows = [{"case": "a", "rule": r, "attack": "none", "draw": 0, "phase": "no attack", "metric": "backdoor_train_acc",
             "value": 0.3} for r in dict.fromkeys(r for _, r in excess)]
    for (attack, rule), e in excess.items():
        for draw, jitter in enumerate((-0.01, 0.01)):
            for phase, v in (("right after", 0.3 + e + jitter), ("after 50 rounds", 0.3 + e / 2)):
                rows.append({"case": "a", "rule": rule, "attack": attack, "draw": draw, "phase": phase,
                             "metric": "backdoor_train_acc", "value": v})
    return pd.DataFrame(rows)


def test_rule_reports_are_tables_with_a_row_per_adversary_and_rule():
    text = report.rule_adaptive(rule_table({("spread", "mean"): 0.6, ("spread", "flame"): 0.2}))
    lines = [line for line in text.splitlines() if line.startswith("| spread")]
    assert lines == ["| spread | mean | +0.60 (+0.59 to +0.61) | +0.30 |",
                     "| spread | flame | +0.20 (+0.19 to +0.21) | +0.10 |"]
    assert "right after (a)" in text and "after 50 rounds (a)" in text


def test_the_benign_report_says_why_backdoor_accuracy_can_sit_above_chance_only_when_it_does():
    def table(backdoor: float) -> pd.DataFrame:
        return pd.DataFrame({"mean": [0.85, 0.87, backdoor, backdoor], "ci95": [0.03] * 4, "episodes": [40] * 4},
                            index=["main_task_acc", "meta_test_acc", "backdoor_train_acc", "backdoor_val_acc"])
    above, within = report.benign_metrics(table(0.35), ways=5), report.benign_metrics(table(0.21), ways=5)
    assert "above chance (0.20)" in above and "no right answer" in above
    assert "within its interval of chance" in within and "no right answer" not in within
