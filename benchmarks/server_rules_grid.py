"""Every adversary against every server-side rule (notebooks 06 and 07 run parts of this grid).

    .venv/bin/python benchmarks/server_rules_grid.py [--profile quick] [--draws 3] [--results-dir results] [--set k=v ...]

For cases (a) and (b) and ``--draws`` draws of the adversary (``measure.rule_draws``; the notebooks run
the profile's, fewer, to stay within minutes): backdoor accuracy (attack
training and validation set) and main task with no attack, right after the attack and after
``measure.rule_rounds`` benign rounds (mean, lowest and highest draw); each rule's cost without
attack; which rules stop the protocol's attack. Results are cached like every experiment's, so the
notebooks then load the pairs they show. Prints the minutes it took (one run, this machine).
"""
import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fmlbd.config import load_config, parse_overrides  # noqa: E402
from fmlbd import metrics  # noqa: E402
from fmlbd.experiments import server  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="quick")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--data-root", default="data")
    p.add_argument("--draws", type=int, default=3, help="adversary draws per rule x adversary x case")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    cfg = load_config(args.profile, {**parse_overrides(args.set), "results_dir": args.results_dir,
                                     "data.root": args.data_root, "measure.rule_draws": args.draws,
                                     "measure.rule_main_task": True})
    start = time.perf_counter()
    table = server.server_rules(cfg, ("a", "b"), True, server.FULL_GRID)
    cost = server.rule_cost(cfg, ("a", "b"), True)
    minutes = (time.perf_counter() - start) / 60
    pd.set_option("display.width", 200)
    for metric in ("backdoor_train_acc", "backdoor_val_acc", "main_task_acc"):
        print(f"\n== {metric}: mean (lowest-highest) over {cfg.measure.rule_draws} draws")
        print(server.spread_cells(table, metric).to_string())
    print("\n== cost without attack")
    print(cost.pivot_table(index=["case", "rule"], columns="metric", values="value").round(3).to_string())
    print("\n== does the rule stop the protocol's attack (backdoor within "
          f"{metrics.BACKDOOR_MARGIN} of no attack, main task within {metrics.MAIN_TASK_MARGIN} of the mean)?")
    print(server.stopping_rules(table, cost).round(3).to_string(index=False))
    print(f"\n{minutes:.1f} minutes")
