"""Flower's Simulation Engine with more clients: rounds per second of the buffered federation with
M of C clients (one adversary, client 0), smoke profile; one run each, this machine.

    python benchmarks/flower_scale.py [--sizes 20:15 100:75] [--rounds 20] [--data DIR]

Rounds/s counts aggregation rounds (pre-training and the attack round) over the ServerApp's run,
Flower's start-up excluded; it measures the engine's overhead, since smoke-profile training is tiny.
The full Omniglot zips give 100 clients enough classes each (with rotations).
"""
from __future__ import annotations

import argparse
import tempfile

from fmlbd.config import load_config
from fmlbd.flower.simulation import simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["20:15", "100:75"], help="CLIENTS:BUFFER pairs")
    parser.add_argument("--rounds", type=int, default=20, help="pre-training rounds before the attack")
    parser.add_argument("--data", default="data")
    parser.add_argument("--cpus-per-client", type=float, default=1.0)
    args = parser.parse_args()
    for size in args.sizes:
        clients, buffer = (int(v) for v in size.split(":"))
        with tempfile.TemporaryDirectory() as results:
            cfg = load_config("smoke", {"data.root": args.data, "results_dir": results, "federation.clients": clients,
                                        "federation.buffer_size": buffer, "federation.rounds": args.rounds, "data.rotations": 4,
                                        "data.source": "full", "data.test_alphabets": (),
                                        "eval.log_every": 10 ** 6})
            run, _ = simulate(cfg, args.cpus_per_client)
        stale = sum(s > 0 for r in run.records for s in r.staleness)
        print(f"{clients} clients, buffer {buffer}: {len(run.records)} rounds in {run.seconds:.1f} s = "
              f"{len(run.records) / run.seconds:.2f} rounds/s ({stale} stale updates aggregated)", flush=True)


if __name__ == "__main__":
    main()
