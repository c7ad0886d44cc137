#!/usr/bin/env bash
# Set up (see setup.sh), then run the unit tests and execute every notebook once under the
# quick profile with nbval (cells check the headline claims, so a science regression fails).
# A cell may pre-train models for ~10 minutes on 2 cores: the per-cell limit is an hour, not
# nbval's default 2000 s, so a busy machine does not fail CI (CI's own limit is 90 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest tests notebooks --nbval-lax --nbval-current-env --nbval-cell-timeout=3600 "$@"
