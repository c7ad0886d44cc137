#!/usr/bin/env bash
# Set up (see setup.sh) and run the main job under a profile (default: quick).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m fmlbd train --profile "${1:-quick}" "${@:2}"
