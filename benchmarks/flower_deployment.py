"""The attack on Flower's Deployment Engine on this machine: a SuperLink and one SuperNode per client
as separate processes (insecure, localhost), ``flwr run`` of the app; prints the four metrics after
pre-training and right after the attack, and the wall time.

    python benchmarks/flower_deployment.py [--profile quick] [--start pretrained|scratch] [--data DIR]

``--start pretrained`` (default) starts from fmlbd's pre-trained model (shipped for the quick profile)
and runs only the attack on Flower: pre-training through SuperNodes that start a process per
message takes seconds per round.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from fmlbd.config import load_config
from fmlbd.flower.deployment import LocalDeployment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--start", choices=("pretrained", "scratch"), default="pretrained")
    parser.add_argument("--data", default="data")
    parser.add_argument("--results-dir", default="results/flower-deployment")
    args = parser.parse_args()
    data, results = Path(args.data).resolve(), Path(args.results_dir).resolve()
    cfg = load_config(args.profile, {"data.root": str(data), "results_dir": str(results)})
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as home, LocalDeployment(Path(home), data, cfg.federation.clients) as d:
        d.run({"profile": args.profile, "data-root": str(data), "results-dir": str(results), "start": args.start})
    seconds = time.perf_counter() - start
    out = results / cfg.profile
    scores = pd.read_csv(out / f"flower-seed{cfg.seed}.csv")
    updates = pd.read_csv(out / f"flower-updates-seed{cfg.seed}.csv")
    print(scores.pivot(index="metric", columns="phase", values="value").to_string(float_format=lambda v: f"{v:.3f}"))
    print(updates.to_string(index=False))
    print(f"{updates['round'].nunique()} rounds on the Deployment Engine, {seconds / 60:.2f} min wall "
          f"(SuperLink and {cfg.federation.clients} SuperNodes started and stopped included)")


if __name__ == "__main__":
    main()
