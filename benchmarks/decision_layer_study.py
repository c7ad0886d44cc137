"""Does the matching-network defense remove a backdoor that lives in the decision layer?

Runs the defense comparison (fine-tuning vs the matching network on the same head-trained
model, right before and after the one-shot attack, cases (a) and (b)) for a zeroed or learned
head x a random or pinned target label, and prints backdoor and main-task accuracies. Quick profile; the learned-head
models are pre-trained on first use (two models side by side, about 7 minutes on 2 cores).

    python benchmarks/decision_layer_study.py [results_dir]
"""
import sys
from pathlib import Path

import pandas as pd

from fmlbd.experiments.defense import defense_comparison
from fmlbd.config import load_config
from fmlbd.results import save_table

SETTINGS = {("zeroed", "random"): {}, ("zeroed", "pinned to 0"): {"attack.target_label": 0},
            ("learned", "random"): {"meta.zero_head": False},
            ("learned", "pinned to 0"): {"meta.zero_head": False, "attack.target_label": 0}}
HEAD_TRAINED = {"defense.shared_model": "head"}  # the study is about the shared head: no matching federation

if __name__ == "__main__":
    results = sys.argv[1] if len(sys.argv) > 1 else "results"
    tables = []
    for (head, label), overrides in SETTINGS.items():
        cfg = load_config("quick", {"results_dir": results, **HEAD_TRAINED, **overrides})
        tables.append(defense_comparison(cfg, ("a", "b")).assign(head=head, target_label=label))
    table = pd.concat(tables, ignore_index=True)
    save_table(table, Path(results) / "quick" / "decision-layer-study-seed0.csv", load_config("quick").to_dict(),
               settings={f"{h}/{l}": o for (h, l), o in SETTINGS.items()})
    print(table.pivot_table(index=["head", "target_label", "case", "method", "phase"], columns="metric",
                            values="value").round(3).to_string())
