"""The course lab's files: one otter-grader master notebook per notebook of the series, and
``otter assign`` run on each (the student version, the solutions, an autograder archive).

The master of notebook ``NN`` is the series notebook itself with its code task (the cell tagged
``task``) made an otter question: the function as written in ``solutions/NN_solutions.ipynb``, its
solution lines hidden from students and the series' ``raise NotImplementedError`` line shown
instead, then one test case per check of the task (:attr:`fmlbd.lab.tasks.Task.checks`), the public
ones in the student version, the hidden ones only in the autograder. Everything else in the
notebook is the series' own. Needs the ``lab`` extra (otter-grader).
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

from ..series import NOTEBOOK_DIR, series
from ..site import repository_url
from .tasks import TASKS, task

TAG = "task"


def _cell(kind: str, source: str) -> dict:
    cell = {"cell_type": kind, "metadata": {}, "source": source.splitlines(True)}
    return cell | ({"outputs": [], "execution_count": None} if kind == "code" else {})


def _task_cell(nb: dict, where: Path) -> tuple[int, str]:
    found = [i for i, c in enumerate(nb["cells"]) if TAG in c["metadata"].get("tags", [])]
    if len(found) != 1:
        raise ValueError(f"{where}: expected one cell tagged {TAG!r} (the code task), found {len(found)}")
    return found[0], "".join(nb["cells"][found[0]]["source"])


def _function(source: str, where: Path) -> tuple[str, int]:
    """The name of the one task function defined in ``source`` and the line its docstring ends on."""
    fns = [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name in TASKS]
    if len(fns) != 1 or not ast.get_docstring(fns[0]):
        raise ValueError(f"{where}: the task cell should define one documented function of {sorted(TASKS)}")
    return fns[0].name, fns[0].body[0].end_lineno


def solution_cell(stub: str, solution: str, where: Path) -> tuple[str, str]:
    """(task name, the master's cell): ``solution``'s function with its body between otter's solution
    markers and ``stub``'s last line (the ``raise``) as the students' prompt. The two cells must agree
    on everything above the body (imports, signature, docstring)."""
    name, end = _function(solution, where)
    head, body = solution.splitlines()[:end], solution.splitlines()[end:]
    if stub.splitlines()[:-1] != head:
        raise ValueError(f"{where}: the series' and the solutions' {name} differ above the body; make them agree")
    prompt = stub.splitlines()[-1]
    return name, "\n".join(head + ["    # BEGIN SOLUTION NO PROMPT", *body, "    # END SOLUTION",
                                   '    """ # BEGIN PROMPT', prompt, '    """ # END PROMPT'])


def test_cells(name: str) -> list[dict]:
    """One otter test case per check of task ``name``; the hidden ones start with ``# HIDDEN``."""
    t = task(name)
    return [_cell("code", ("# HIDDEN\n" if i >= t.n_public else "") +
                  f"def test_{name}_{i}({name}):\n    from fmlbd.lab import tasks\n"
                  f"    tasks.test({name!r}, {i}, {name})\n\ntest_{name}_{i}({name})")
            for i in range(len(t.checks))]


def master(notebook: Path, solutions: Path) -> dict:
    """The otter master notebook of one notebook of the series."""
    nb, sol = json.loads(notebook.read_text()), json.loads(solutions.read_text())
    at, stub = _task_cell(nb, notebook)
    name, cell = solution_cell(stub, _task_cell(sol, solutions)[1], solutions)
    config = {"name": notebook.stem, "requirements": "requirements.txt", "init_cell": False,
              "check_all_cell": False, "export_cell": False, "run_tests": False, "generate": True,
              "tests": {"files": False, "ok_format": False}}
    begin = at - 1 if at and nb["cells"][at - 1]["cell_type"] == "markdown" else at   # the task's prompt
    question = [_cell("raw", f"# BEGIN QUESTION\nname: {name}\ncheck_cell: false\npoints:\n  each: 1"), *nb["cells"][begin:at],
                _cell("raw", "# BEGIN SOLUTION"), _cell("code", cell), _cell("raw", "# END SOLUTION"),
                _cell("raw", "# BEGIN TESTS"), *test_cells(name), _cell("raw", "# END TESTS"),
                _cell("raw", "# END QUESTION")]
    head = _cell("raw", "# ASSIGNMENT CONFIG\n" + json.dumps(config, indent=1))  # JSON is YAML
    cells = [head, *nb["cells"][:begin], *question, *nb["cells"][at + 1:]]
    return nb | {"cells": [c | {"id": f"cell-{i}"} for i, c in enumerate(cells)]}


def lab_notebooks() -> list[tuple[Path, Path]]:
    """(series notebook, its solutions) for every notebook with a code task, in order."""
    numbers = {t.notebook for t in TASKS.values()}
    return [(nb, NOTEBOOK_DIR / "solutions" / f"{nb.stem[:2]}_solutions.ipynb") for nb in series()
            if nb.stem[:2] in numbers]


def build(target: str | Path) -> list[Path]:
    """Write ``target/masters/`` and, per notebook, ``target/<notebook>/{student,autograder}`` (otter
    assign's output: the student notebook, the solutions notebook and the autograder zip). Refuses a
    ``target`` that exists and is not empty. Returns the student notebooks."""
    from otter.assign import main as otter_assign

    target = Path(target)
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} is not empty: choose a new folder for the lab (or remove it)")
    masters = target / "masters"
    masters.mkdir(parents=True)
    (masters / "requirements.txt").write_text(f"fmlbd[lab] @ git+{repository_url()}\n")   # what Gradescope installs
    students = []
    for notebook, solutions in lab_notebooks():
        path = masters / notebook.name
        path.write_text(json.dumps(master(notebook, solutions), indent=1, ensure_ascii=False) + "\n")
        otter_assign(str(path), str(target / notebook.stem), no_pdfs=True, no_run_tests=True)
        students.append(target / notebook.stem / "student" / notebook.name)
    return students


def autograder(target: str | Path, notebook: str) -> Path:
    """The autograder zip ``build(target)`` wrote for ``notebook`` (a series notebook's stem)."""
    zips = sorted((Path(target) / notebook / "autograder").glob("*.zip"))
    if len(zips) != 1:
        raise FileNotFoundError(f"no autograder zip for {notebook} in {target}: run `python -m fmlbd lab {target}`")
    return zips[0]

