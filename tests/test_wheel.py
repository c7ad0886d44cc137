"""fmlbd as a wheel, outside any checkout: the wheel carries the notebooks and the shipped models,
`python -m fmlbd notebooks DIR` writes them anywhere, and notebooks 01 and 02 run there with papermill.

The fresh environment reuses this one's packages (torch, papermill, ...) through a .pth line but
imports fmlbd from the wheel. Data and the results cache come from FMLBD_DATA / FMLBD_RESULTS, set to
this checkout's: run after the notebooks (see conftest.py), 02 reads their cache.
"""
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from fmlbd.hygiene import notebook_problems
from tests.conftest import REPO


def run(*args, env=None, cwd=None):
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, cwd=cwd)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.after_notebooks
@pytest.mark.slow
def test_the_wheel_runs_notebooks_01_and_02_outside_a_checkout(tmp_path, omniglot_root):
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist", REPO,
        env=os.environ | {"PYTHONWARNINGS": "ignore"})
    wheel = next((tmp_path / "dist").glob("fmlbd-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert sum(n.startswith("fmlbd/notebooks/") and n.endswith(".ipynb") for n in names) == 16
    assert sum(n.startswith("fmlbd/pretrained/") and n.endswith(".pt") for n in names) == 12

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    site = Path(run(venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").strip())
    run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, wheel)
    (site / "reuse-torch.pth").write_text(sysconfig.get_path("purelib") + "\n")
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMLBD_")} | {
        "FMLBD_DATA": str(omniglot_root), "FMLBD_RESULTS": str(REPO / "results"), "PYTHONPATH": ""}
    course = tmp_path / "course"                     # far from any checkout: paths.checkout() finds none
    where = run(python, "-c", "import fmlbd, fmlbd.series as s; print(fmlbd.__file__); print(s.NOTEBOOK_DIR)",
                env=env, cwd=tmp_path).split()
    assert all(Path(w).is_relative_to(site) for w in where), where
    run(python, "-m", "fmlbd", "notebooks", course, env=env, cwd=tmp_path)

    for name in ("01_threat_model", "02_one_shot_attack"):
        run(python, "-m", "papermill", "--no-progress-bar", course / f"{name}.ipynb", course / f"{name}.run.ipynb",
            env=env, cwd=course)
        executed = json.loads((course / f"{name}.run.ipynb").read_text())
        assert notebook_problems(executed["cells"]) == [], name
    assert sorted(p.name for p in (course / "outputs" / "quick" / "summary").glob("*.json")) == [
        "01_threat_model.json", "02_one_shot_attack.json"]
