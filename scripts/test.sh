#!/usr/bin/env bash
# Set up (see setup.sh), then run the unit tests and execute every notebook once under the
# quick profile with nbval (cells check the headline claims, so a science regression fails).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest tests notebooks --nbval-lax --nbval-current-env "$@"
