"""Committed notebooks stay thin and output-free; executing them is nbval's job (see README)."""
import json

import pandas as pd
import pytest

from fmlbd.config import load_config
from fmlbd.reproduce import NOTEBOOK_DIR, series

NOTEBOOKS = series()
PARAMETERS = ("profile", "seed", "dataset", "data_root", "results_dir", "output_dir", "overrides")


def test_series_is_complete_and_numbered():
    names = [nb.stem for nb in NOTEBOOKS]
    assert names == ["01_threat_model", "02_one_shot_attack", "03_federated_dampening", "04_finetuning_failure",
                     "05_matching_network_defense"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs_and_a_parameters_cell(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] for c in code), "clear outputs before committing (jupyter nbconvert --clear-output)"
    assert all(c["execution_count"] is None for c in code), "execution counts must be cleared"
    assert path.stat().st_size < 20_000
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters' (papermill)"
    source = "".join(tagged[0]["source"])
    assert all(f"{name} =" in source for name in PARAMETERS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_cells_stay_short(path):
    """Notebooks never hide logic: long code belongs in fmlbd."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert len("".join(cell["source"]).splitlines()) <= 12, "".join(cell["source"])[:80]


def test_notebook_dir_is_the_repos():
    assert NOTEBOOK_DIR.name == "notebooks" and (NOTEBOOK_DIR.parent / "fmlbd").is_dir()


def test_reproduce_passes_overrides_to_the_notebooks(omniglot_root, tmp_path):
    """``reproduce --set k=v`` changes what the notebooks compute, and the summary records it."""
    from fmlbd.cli import main

    runs = {}
    for name, extra in (("default", []), ("override", ["--set", "attack.attack_train_images=5"])):
        out = tmp_path / name
        assert main(["reproduce", "--profile", "smoke", "--only", "01", "--data-root", str(omniglot_root),
                     "--results-dir", str(tmp_path / "results"), "--output", str(out), "--no-progress", *extra]) == 0
        summary = pd.read_csv(out / "summary.csv").set_index("name")["value"]
        runs[name] = (summary, json.loads((out / "summary.meta.json").read_text())["parameters"]["overrides"])
    backdoor_classes = load_config("smoke").attack.backdoor_classes
    assert runs["default"][0]["attack_train_images"] == backdoor_classes * 10 and runs["default"][1] == {}
    assert runs["override"][0]["attack_train_images"] == backdoor_classes * 5
    assert runs["override"][1] == {"attack.attack_train_images": "5"}
