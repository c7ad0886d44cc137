"""The same federation in fmlbd's in-process simulation and on Flower's Simulation Engine: the global
model's four metrics after pre-training and right after the one-shot attack, side by side, and the
wall time of each; one run, this machine.

    python benchmarks/flower_vs_inprocess.py [--profile quick] [--data DIR] [--results-dir DIR]

Both train from scratch with the same config and seed (the in-process run ignores shipped models,
in a results folder of its own). They cannot agree bit for bit: the in-process simulation draws
each client's compute time from a seeded distribution, Flower's clients take as long as they take,
so which updates share a round differs; the metrics should agree within sampling noise.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from fmlbd import pipeline
from fmlbd.config import load_config
from fmlbd.flower.server_app import phase_scores, save_run
from fmlbd.flower.simulation import simulate


def in_process(cfg) -> tuple[pd.DataFrame, float]:
    start = time.perf_counter()
    attacked = pipeline.attack(cfg)
    seconds = time.perf_counter() - start
    trained = attacked.trained
    return phase_scores(cfg, trained.model, trained.scenario,
                        {"pre-trained": trained.params, "attacked": attacked.after}), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--data", default="data")
    parser.add_argument("--results-dir", default="results/flower-comparison")
    args = parser.parse_args()
    base = {"data.root": args.data, "shipped_models": False}
    here = load_config(args.profile, base | {"results_dir": str(Path(args.results_dir) / "in-process")})
    flower = load_config(args.profile, base | {"results_dir": str(Path(args.results_dir) / "flower")})
    ours, ours_s = in_process(here)
    start = time.perf_counter()
    run, theirs = simulate(flower)
    theirs_s = time.perf_counter() - start
    save_run(flower, run, theirs)
    table = ours.rename(columns={"value": "in-process"}).merge(theirs.rename(columns={"value": "flower"}))
    table["difference"] = table["flower"] - table["in-process"]
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"largest difference {table['difference'].abs().max():.3f} (within 0.05: "
          f"{bool((table['difference'].abs() <= 0.05).all())}); wall time in-process {ours_s / 60:.2f} min "
          f"(pre-training + attack), Flower {theirs_s / 60:.2f} min ({len(run.records)} rounds incl. the attack, "
          f"start-up included)")


if __name__ == "__main__":
    main()
