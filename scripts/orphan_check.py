"""Kill -9 a pre-training parent, again and again, and count the worker processes that outlive it.

Each try starts ``python -m fmlbd attack`` (smoke profile, rounds without end) in one of two ways, in
turn: two cases, so two models pre-train side by side in fresh Python processes
(fmlbd.workers.pretrain_jobs); or one case, so one model pre-trains in the command's own process and
its clients train in forked pool workers (fmlbd.parallel.Pool). It waits until two workers run,
lets them work for a random 0-3 s, sends SIGKILL to the parent (it gets no chance to clean up) and
watches the workers it had: a worker still alive 10 s later is an orphan (then killed). Linux's
parent-death signal is what stops them (fmlbd.parallel.die_with_parent).

    .venv/bin/python scripts/orphan_check.py --tries 50 --data-root data
Prints one line per try and a summary; exits 1 if any worker outlived its parent.
"""
from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def one_try(data_root: str, rng: random.Random, cases: list[str]) -> tuple[int, int]:
    """(workers seen, workers alive 10 s after their parent was killed)."""
    with tempfile.TemporaryDirectory() as results:
        parent = subprocess.Popen([sys.executable, "-m", "fmlbd", "attack", "--profile", "smoke", "--data-root",
                                   data_root, "--results-dir", results, "--no-progress", "--experiment", "one-shot",
                                   "--cases", *cases, "--set", "federation.rounds=100000"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while len(workers := children(parent.pid)) < 2:
            if time.monotonic() > deadline or parent.poll() is not None:
                parent.kill()
                raise SystemExit(f"the parent (pid {parent.pid}) never started two workers; run the command "
                                 f"by hand to see why")
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 3))
        workers = children(parent.pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while any(map(alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        orphans = [w for w in workers if alive(w)]
        for w in orphans:
            subprocess.run(["kill", "-9", str(w)])
        return len(workers), len(orphans)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tries", type=int, default=50)
    ap.add_argument("--data-root", default="data", help="folder holding omniglot/ (the minimal zips)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random waits before each kill")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    seen = orphans = 0
    for i in range(args.tries):
        cases = ["a", "b"] if i % 2 == 0 else ["a"]
        n, left = one_try(args.data_root, rng, cases)
        seen, orphans = seen + n, orphans + left
        kind = "pre-training processes" if len(cases) == 2 else "forked pool workers"
        print(f"try {i + 1}: {n} {kind}, {left} outlived their parent", flush=True)
    print(f"{args.tries} kill -9 of the parent, {seen} workers, {orphans} orphans")
    sys.exit(1 if orphans else 0)


if __name__ == "__main__":
    main()
