#!/usr/bin/env bash
# Run every command-line experiment of the quick profile with wall times, on this machine.
# Usage: bash benchmarks/quick_acceptance.sh [results_dir]   (after scripts/setup.sh)
# Each step prints its table; "WALL <seconds>" after each command is its wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
R=${1:-results}
PY=.venv/bin/python
run() { echo "### $*"; /usr/bin/time -f "WALL %e s" "$PY" -m fmlbd "$@" --no-progress; }
run train --results-dir "$R" --seed 0                       # benign training: 5-way 1/5-shot main task
run attack --results-dir "$R" --seed 0                      # one-shot, dampening, fine-tuning
run attack --results-dir "$R" --experiment chance            # sanity control: no attack, keyed vs clean
run attack --results-dir "$R" --experiment draws --cases a b  # spread of the one-shot attack over the adversary's draws
run attack --results-dir "$R" --experiment boost --cases a b  # sanity control: the same attack without boosting
run defend --results-dir "$R" --seed 0                      # defense, draws, adaptive, ablation, rounds, cost
run defend --results-dir "$R" --experiment server-rules rule-adaptive rule-cost  # server-side rules and their adversaries
run train --results-dir "$R" --seed 1                       # a second seed
for d in 1 2; do run train --results-dir "$R-det$d" --seed 0 --set federation.rounds=300; done  # same seed twice
run train --results-dir "$R-det3" --seed 1 --set federation.rounds=300                         # other seed
