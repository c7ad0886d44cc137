#!/usr/bin/env bash
# Create or reuse ./.venv, install fmlbd with its notebook and test extras, and put the
# minimal Omniglot zips in data/omniglot (copied from ../shared/data/omniglot when present,
# else downloaded from the upstream repository), MD5-verified either way; the full zips are
# copied from ../shared/data/omniglot-full when present.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.fmlbd-install-stamp
want=$(cat pyproject.toml | md5sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing fmlbd and its dependencies (torch + torchvision from the registry; 1-2 minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[notebooks,test]"
  echo "$want" > "$stamp"
fi
mkdir -p data/omniglot
shared=../shared/data/omniglot
for z in images_background_small1.zip images_background_small2.zip; do
  if [ ! -f "data/omniglot/$z" ] && [ -f "$shared/$z" ]; then cp "$shared/$z" data/omniglot/; fi
done
# the full zips (paper profile) when present: upstream's or the pixel-identical rebuild
for z in images_background.zip images_evaluation.zip; do
  if [ ! -f "data/omniglot/$z" ] && [ -f "$shared-full/$z" ]; then cp "$shared-full/$z" data/omniglot/; fi
done
.venv/bin/python -m fmlbd download omniglot --source minimal --root data
