"""``python -m fmlbd.flower simulate``: the federation on Flower's Simulation Engine, one machine.

    python -m fmlbd.flower simulate [--profile quick] [--seed 0] [--set KEY=VALUE ...]
                                    [--data-root data] [--results-dir results] [--cpus-per-client 1]
                                    [--start scratch|pretrained]

Pre-trains for ``federation.rounds`` rounds (or starts from fmlbd's pre-trained model), lets the adversary (client 0) attack, prints a progress
line every ``eval.log_every`` rounds and the four metrics after pre-training and right after the
attack, and saves them (``<results-dir>/<profile>/flower-seed<seed>.csv``, one row per aggregated
update in ``flower-updates-seed<seed>.csv``). Across machines: docs/flower.md.
"""
from __future__ import annotations

import argparse
import sys

from ..config import load_config, parse_overrides
from ..errors import ConfigError, DatasetError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fmlbd.flower", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("simulate", help="pre-train and attack on the Simulation Engine")
    p.add_argument("--profile", default="quick")
    p.add_argument("--seed", default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--data-root", default="data")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--cpus-per-client", type=float, default=1.0, help="CPUs each virtual client reserves")
    p.add_argument("--start", choices=("scratch", "pretrained"), default="scratch",
                   help="pre-train on Flower, or start from fmlbd's pre-trained model (only the attack runs)")
    args = parser.parse_args(argv)
    try:
        overrides = parse_overrides(args.set) | {"data.root": args.data_root, "results_dir": args.results_dir}
        if args.seed is not None:
            overrides["seed"] = args.seed
        cfg = load_config(args.profile, overrides)
        from ..builders import build_scenario
        build_scenario(cfg)  # the data can serve the config, before Flower starts
    except (ConfigError, DatasetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from .server_app import save_run
    from .simulation import simulate

    run, table = simulate(cfg, args.cpus_per_client, args.start == "pretrained")
    out = save_run(cfg, run, table)
    print(table.pivot(index="metric", columns="phase", values="value").to_string())
    print(f"{len(run.records)} rounds in {run.seconds / 60:.2f} min; tables in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
