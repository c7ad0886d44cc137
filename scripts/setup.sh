#!/usr/bin/env bash
# Create or reuse ./.venv, install fmlbd with its notebook, test and site extras, and put the
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
  .venv/bin/python -m pip install -q --upgrade pip
  if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
    # torch's CPU build on Linux without an NVIDIA driver (FMLBD_TORCH=cpu|registry forces one; see the script)
    choice=$(.venv/bin/python scripts/torch_source.py)
    echo "[setup] torch + torchvision: ${choice%%$'\t'*} build (${choice#*$'\t'})"
    if [ "${choice%%$'\t'*}" = cpu ]; then
      PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= .venv/bin/python -m pip install -q \
        --index-url https://download.pytorch.org/whl/cpu "torch>=2.4" "torchvision>=0.19"
    fi
  fi
  echo "[setup] installing fmlbd and its dependencies (1-2 minutes)"
  # the editable install of a package with a mapped folder (fmlbd/notebooks) makes setuptools warn that it
  # is editable: nothing for a user to act on
  PYTHONWARNINGS="ignore:Editable installation:UserWarning" .venv/bin/python -m pip install -q -e ".[notebooks,test,site]"
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
