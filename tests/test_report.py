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
