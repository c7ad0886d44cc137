"""Committed notebooks stay thin and output-free; executing them is nbval's job (see README)."""
import json
import re

import pandas as pd
import pytest

from fmlbd.config import load_config
from fmlbd.series import NOTEBOOK_DIR, series

NOTEBOOKS = series()
SOLUTIONS = sorted((NOTEBOOK_DIR / "solutions").glob("*.ipynb"))
PARAMETERS = ("profile", "seed", "dataset", "data_root", "results_dir", "output_dir", "overrides")


def test_series_is_complete_and_numbered():
    names = [nb.stem for nb in NOTEBOOKS]
    assert names == ["00_primer", "01_threat_model", "02_one_shot_attack", "03_federated_dampening",
                     "04_finetuning_failure", "05_matching_network_defense", "06_server_side_defenses",
                     "07_adversaries_who_know_the_rule"]


@pytest.mark.parametrize("path", NOTEBOOKS + SOLUTIONS, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs_and_a_parameters_cell(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] for c in code), "clear outputs before committing (jupyter nbconvert --clear-output)"
    assert all(c["execution_count"] is None for c in code), "execution counts must be cleared"
    assert len({c.get("id") for c in nb["cells"]} - {None}) == len(nb["cells"]), "every cell needs its own id"
    assert path.stat().st_size < 25_000, "a committed notebook is prose and code: no embedded images or data"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters' (papermill)"
    source = "".join(tagged[0]["source"])
    wanted = PARAMETERS if path in NOTEBOOKS else [p for p in PARAMETERS if p != "output_dir"]
    assert all(f"{name} =" in source for name in wanted)


def test_every_notebook_has_exercises_with_solutions():
    assert [p.stem.split("_")[0] for p in SOLUTIONS] == [nb.stem.split("_")[0] for nb in NOTEBOOKS]
    for nb, solution in zip(NOTEBOOKS, SOLUTIONS):
        checks = [c for c in json.loads(nb.read_text())["cells"]
                  if c["cell_type"] == "code" and "exercises." in "".join(c["source"])]
        solved = [c for c in json.loads(solution.read_text())["cells"]
                  if c["cell_type"] == "code" and "assert verdict.ok" in "".join(c["source"])]
        assert len(checks) >= 2 and len(solved) == len(checks), nb.stem


@pytest.mark.parametrize("path", NOTEBOOKS + SOLUTIONS, ids=lambda p: p.stem)
def test_cells_stay_short(path):
    """Notebooks never hide logic: long code belongs in fmlbd."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert len("".join(cell["source"]).splitlines()) <= 12, "".join(cell["source"])[:80]


def test_notebook_dir_is_the_repos():
    assert NOTEBOOK_DIR.name == "notebooks" and (NOTEBOOK_DIR.parent / "fmlbd").is_dir()


@pytest.mark.slow
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


README = NOTEBOOK_DIR.parent / "README.md"
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w])")
HISTORY = re.compile(r"\bissue\b|\bacceptance\b|\bcommit [0-9a-f]{7,40}\b|\b[0-9a-f]{7,40}\b(?=[ ,;.)])", re.I)


def prose(text: str) -> str:
    """``text`` without code blocks and code spans (where config values and versions live)."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))


def markdown_of(path) -> str:
    if path.suffix == ".md":
        return path.read_text()
    return "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown")


@pytest.mark.parametrize("path", NOTEBOOKS + SOLUTIONS + [README], ids=lambda p: p.stem)
def test_no_measured_number_is_typed_into_prose(path):
    """Numbers a run measures are rendered from its tables (fmlbd.report), never typed: a decimal
    number in prose is one a fresh run on another machine could contradict."""
    assert DECIMAL.findall(prose(markdown_of(path))) == []
    assert HISTORY.findall(prose(markdown_of(path))) == [], "the product speaks of science and software only"


def test_the_typed_number_check_sees_numbers_in_prose_only():
    assert DECIMAL.findall(prose("backdoor accuracy 0.94 (a) and 12.5 minutes")) == ["0.94", "12.5"]
    assert DECIMAL.findall(prose("with `meta.inner_lr=0.1`, 5 steps, 1/N\n```\nlr = 0.1\n```")) == []
    assert HISTORY.findall(prose("as the issue asked, since commit 8e2ec2d")) != []


@pytest.mark.parametrize("path", NOTEBOOKS + SOLUTIONS, ids=lambda p: p.stem)
def test_the_first_code_cell_installs_fmlbd_on_colab_from_the_one_repository_address(path):
    from fmlbd.site import colab_install_cell

    code = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    assert "".join(code[0]["source"]) == colab_install_cell(), (
        "the Colab cell must match fmlbd.site.colab_install_cell() (pyproject.toml's [project.urls] Repository)")
