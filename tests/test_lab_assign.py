"""The course lab's files (``python -m fmlbd lab DIR``): student notebooks without solutions or hidden
tests, and otter's autograder grading real submissions. Needs the lab extra (otter-grader); CI installs
it and sets FMLBD_REQUIRE_LAB=1, so there these tests run or fail, never skip."""
from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

if os.environ.get("FMLBD_REQUIRE_LAB") != "1":
    pytest.importorskip("otter", reason="the lab extra is not installed: pip install -e '.[lab]'")

from fmlbd import paths  # noqa: E402
from fmlbd.cli import main  # noqa: E402
from fmlbd.lab import assign  # noqa: E402
from fmlbd.lab.tasks import TASKS  # noqa: E402
from tests.wrong_implementations import WRONG  # noqa: E402

NOTEBOOKS = [nb.stem for nb, _ in assign.lab_notebooks()]
TASK_OF = {nb: next(t.name for t in TASKS.values() if t.notebook == nb[:2]) for nb in NOTEBOOKS}


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("lab") / "lab"
    assert main(["lab", str(target)]) == 0
    return target


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def task_cell(nb: list[dict]) -> dict:
    return next(c for c in nb if "otter_answer_cell" in c["metadata"].get("tags", []))


def solution_lines(notebook: str) -> list[str]:
    """The solution's body: the lines of the solutions notebook's function below its docstring."""
    solved = source(next(c for c in cells(assign.NOTEBOOK_DIR / "solutions" / f"{notebook[:2]}_solutions.ipynb")
                         if "task" in c["metadata"].get("tags", [])))
    _, end = assign._function(solved, Path(notebook))
    return [line.strip() for line in solved.splitlines()[end:] if line.strip()]


def test_there_is_a_lab_notebook_for_every_task():
    assert NOTEBOOKS == [nb.stem for nb in assign.series()] and len(set(TASK_OF.values())) == len(TASKS)


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_no_student_notebook_holds_solution_code_or_hidden_tests(lab, notebook):
    student = lab / notebook / "student" / f"{notebook}.ipynb"
    name, text = TASK_OF[notebook], student.read_text()
    body = solution_lines(notebook)
    assert body and not [line for line in body if line in text], "a solution line is in the student notebook"
    assert "NotImplementedError" in source(task_cell(cells(student)))
    assert not any(marker in text for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN PROMPT", "HIDDEN"))
    shipped = json.loads(text)["metadata"]["otter"]["tests"][name]
    hidden = range(TASKS[name].n_public, len(TASKS[name].checks))
    assert f"tasks.test({name!r}, 0," in shipped and "hidden=True" not in shipped
    assert not any(f"tasks.test({name!r}, {i}," in shipped for i in hidden)
    with zipfile.ZipFile(assign.autograder(lab, notebook)) as z:   # the autograder holds every check
        graded = z.read(f"tests/{name}.py").decode()
    assert all(f"tasks.test({name!r}, {i}," in graded for i in range(len(TASKS[name].checks)))
    assert graded.count("hidden=True") == len(hidden)


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_the_student_notebook_is_the_series_but_for_the_task(lab, notebook):
    student = [source(c) for c in cells(lab / notebook / "student" / f"{notebook}.ipynb")]
    series = [source(c) for c in cells(assign.NOTEBOOK_DIR / f"{notebook}.ipynb")]
    assert student == series


def test_a_solution_that_drifted_from_the_stub_is_refused():
    stub = 'def clip_updates(updates, bound):\n    """Doc."""\n    raise NotImplementedError'
    with pytest.raises(ValueError, match="differ above the body"):
        assign.solution_cell(stub, 'def clip_updates(updates, bound):\n    """Other."""\n    return updates', Path("x"))


def test_the_lab_command_refuses_a_folder_in_use(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep")
    assert main(["lab", str(tmp_path)]) == 2
    assert "is not empty" in capsys.readouterr().err and (tmp_path / "mine.txt").read_text() == "keep"


# --- grading real submissions ---------------------------------------------------------------------------

def wrong_submission(lab: Path, notebook: str, out: Path) -> Path:
    """The student notebook with the task's plausible wrong implementation (tests/test_lab.py) written in."""
    nb = json.loads((lab / notebook / "student" / f"{notebook}.ipynb").read_text())
    name, wrong = TASK_OF[notebook], WRONG[TASK_OF[notebook]][0]
    code = f"import torch\nimport torch.nn.functional as F\n\n{inspect.getsource(wrong)}\n{name} = {wrong.__name__}\n"
    task_cell(nb["cells"])["source"] = code.splitlines(True)
    out.write_text(json.dumps(nb))
    return out


def grade(lab: Path, notebook: str, submission: Path, out: Path) -> tuple[float, float, str]:
    """(score, max score, every test's output) of otter's autograder on ``submission``; ``--debug``: an
    error in any cell of the notebook fails the run instead of being ignored."""
    root = paths.checkout()
    env = os.environ | {"FMLBD_RESULTS": str(root / "results"), "FMLBD_DATA": str(root / "data"),
                        "FMLBD_OUTPUTS": str(out / "outputs"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "otter", "run", "--debug", "--no-logo", "-a",
                           str(assign.autograder(lab, notebook)), "-o", str(out), str(submission)],
                          env=env, capture_output=True, text=True, cwd=out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tests = json.loads((out / "results.json").read_text())["tests"]
    scored = [t for t in tests if "max_score" in t]
    return (sum(t["score"] for t in scored), sum(t["max_score"] for t in scored),
            "\n".join(t.get("output", "") for t in tests))


@pytest.mark.slow
@pytest.mark.after_notebooks
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_the_autograder_grades_solutions_untouched_and_wrong_submissions(lab, notebook, tmp_path):
    """Each submission runs the whole notebook, reading the cache the notebooks filled: two at a time,
    one thread each."""
    name = TASK_OF[notebook]
    runs = {"solutions": lab / notebook / "autograder" / f"{notebook}.ipynb",
            "untouched": lab / notebook / "student" / f"{notebook}.ipynb",
            "wrong": wrong_submission(lab, notebook, tmp_path / f"{notebook}.ipynb")}
    for kind in runs:
        (tmp_path / kind).mkdir()
    with ThreadPoolExecutor(2) as pool:
        graded = dict(zip(runs, pool.map(lambda kind: grade(lab, notebook, runs[kind], tmp_path / kind), runs)))
    full = len(TASKS[name].checks)
    assert graded["solutions"][:2] == (full, full)
    assert graded["untouched"][:2] == (0, full) and "not written yet" in graded["untouched"][2]
    score, _, output = graded["wrong"]
    assert 0 < score < full, graded["wrong"]
    assert WRONG[name][1] in output, output
