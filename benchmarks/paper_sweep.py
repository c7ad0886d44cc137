"""Which training settings learn fastest on full Omniglot: each candidate trains the paper profile's
federation for the same wall-clock time on two cores of its own, then is scored on 5-way and
20-way 1-shot episodes of the 20 evaluation alphabets (non-transductive, ``eval.finetune_steps``).

    python benchmarks/paper_sweep.py [--minutes 5] [--episodes 60] [--data DIR] [--only NAME ...]

Candidates run side by side, one process each pinned to two cores (``os.sched_setaffinity``), so
that each trains as it would alone on a 2-core machine; with fewer than two cores per candidate
they share what there is and still get the same budget under the same load. Scores at a short
budget rank how fast a setting learns, not where it ends: a longer run can change the order.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

#: every candidate starts from the paper profile with 5-way training episodes of 10-image inner steps and
#: 5 meta-steps per client update, and changes what it names ("10-way training episodes" is the profile)
BASE = {"meta.ways": 5, "meta.inner_batch": 10, "meta.local_iterations": 5}
CANDIDATES = {
    "5-way, 5 meta-steps per update": {},
    "1 meta-step per update": {"meta.local_iterations": 1},
    "10 meta-steps per update": {"meta.local_iterations": 10},
    "10-way training episodes": {"meta.ways": 10, "meta.inner_batch": 20},
    "inner lr 0.05": {"meta.inner_lr": 0.05},
    "inner lr 0.2": {"meta.inner_lr": 0.2},
    "10 inner steps": {"meta.inner_steps": 10},
    "meta lr 0.5": {"meta.meta_lr": 0.5},
}


def run_one(name: str, minutes: float, episodes: int, data: str) -> dict:
    """Train candidate ``name`` for ``minutes`` and score it (runs in its own process)."""
    from fmlbd import builders
    from fmlbd.config import load_config, with_overrides
    from fmlbd.evaluation import main_task_table
    from fmlbd.parallel import one_thread

    cfg = load_config("paper", {"data.root": data, **BASE, **CANDIDATES[name]})
    scenario = builders.build_scenario(cfg)
    model = builders.build_model(cfg, scenario)
    fed = builders.make_federation(cfg, model, builders.initial_params(cfg, model), builders.benign_clients(cfg, scenario))
    start = time.perf_counter()
    with one_thread():
        while time.perf_counter() - start < minutes * 60:
            fed.step()
        trained_s = time.perf_counter() - start
        fed.close()
        row = {"candidate": name, "settings": CANDIDATES[name], "rounds": fed.version, "train_s": round(trained_s, 1)}
        table = main_task_table(with_overrides(cfg, {"eval.episodes": episodes}), model, fed.params, scenario,
                                (1,), (5, 20))
        for r in table.itertuples():
            row[f"{r.ways}-way 1-shot"], row[f"{r.ways}-way ci95"] = round(r.value, 4), round(r.ci95, 4)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="training time per candidate (default 5)")
    parser.add_argument("--episodes", type=int, default=60, help="meta-test episodes per score (default 60)")
    parser.add_argument("--data", default="data", help="data root holding omniglot/ with the full zips")
    parser.add_argument("--only", nargs="+", default=None, choices=sorted(CANDIDATES), metavar="NAME")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one candidate
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.minutes, args.episodes, args.data)), flush=True)
        return
    import subprocess

    names = args.only or list(CANDIDATES)
    cores = sorted(os.sched_getaffinity(0))
    per = max(1, len(cores) // len(names))
    procs = []
    for i, name in enumerate(names):
        mine = set(cores[(i * per) % len(cores):][:per]) if per >= 2 else set(cores)
        env = dict(os.environ, FMLBD_WORKERS=str(min(len(mine), 2) if per >= 2 else 1),
                   CUDA_VISIBLE_DEVICES="")  # CPU cores only: forked workers (fmlbd.parallel.gpu_visible)
        cmd = [sys.executable, __file__, "--one", name, "--minutes", str(args.minutes), "--episodes",
               str(args.episodes), "--data", args.data]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True,
                                      preexec_fn=lambda m=mine: os.sched_setaffinity(0, m)))
    print(f"{len(names)} candidates, {per} core(s) each, {args.minutes} min of training each")
    for proc in procs:
        out, _ = proc.communicate()
        print(out.strip().splitlines()[-1] if out.strip() else f"failed (exit {proc.returncode})", flush=True)


if __name__ == "__main__":
    main()
