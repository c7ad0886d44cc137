#!/usr/bin/env bash
# Set up (see setup.sh), then run every notebook headless with papermill under a profile
# (default quick): executed notebooks, figures (PNG + SVG) and summary in outputs/<profile>/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m fmlbd reproduce --profile "${1:-quick}" "${@:2}"
