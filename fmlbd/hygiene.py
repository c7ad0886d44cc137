"""What a learner should never see in an executed notebook: a warning, a traceback, a stray return
value (a path or a matplotlib object echoed as text by the last line of a cell), or a cell that leaves more
than one progress bar on screen.

Outputs are nbformat dicts (``{"output_type": "stream", "name": "stderr", "text": ...}``), as
papermill writes them and nbval collects them; see ``notebooks/conftest.py``, which checks every
cell that the test command runs.
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping

WARNING = re.compile(r"\b[A-Z]\w*Warning: ")
TRACEBACK = "Traceback (most recent call last)"
#: a tqdm bar as it is left on screen: "4/10 [00:01<00:02" or "12it [00:01, ..."
PROGRESS_BAR = re.compile(r"\d+(/\d+)? ?\w* \[\d+:\d\d")
#: the text of a return value nobody meant to show
STRAY_VALUE = re.compile(r"^(PosixPath\(|WindowsPath\(|<Figure size|<matplotlib\.|\[<matplotlib\.|<Axes)")


def visible_lines(text: str) -> list[str]:
    """The non-blank lines a notebook front end shows for a stream: of each line, the text after its
    last carriage return (a progress bar redraws itself after ``\\r``; one closed with
    ``leave=False`` ends in ``\\r`` and shows nothing)."""
    lines = (line.split("\r")[-1] for line in text.replace("\r\n", "\n").split("\n"))
    return [line for line in lines if line.strip()]


def output_problems(outputs: Iterable[Mapping]) -> list[str]:
    """One short description per problem in one cell's outputs (empty: the cell is clean). Stream
    outputs of one name are read as one text, as a front end shows them (a progress bar redrawn
    across many messages is one bar)."""
    problems, streams = [], {}
    for out in outputs:
        kind = out.get("output_type")
        if kind == "error":
            problems.append(f"an error: {out.get('ename')}: {out.get('evalue')}")
        elif kind == "stream":
            streams[out.get("name")] = streams.get(out.get("name"), "") + "".join(out.get("text", ""))
        elif kind == "execute_result" and set(out.get("data", {})) == {"text/plain"}:  # a figure shows itself
            value = "".join(out["data"]["text/plain"])
            if STRAY_VALUE.match(value):
                problems.append(f"a stray return value: {value[:80]} (end the line with ';')")
    bars = 0
    for text in streams.values():
        lines = visible_lines(text)
        problems += [f"a warning: {line.strip()[:120]}" for line in lines if WARNING.search(line)]
        if TRACEBACK in text:
            problems.append("a traceback")
        bars += sum(bool(PROGRESS_BAR.search(line)) for line in lines)
    if bars > 1:
        problems.append(f"{bars} progress bars (at most one per cell)")
    return problems


def notebook_problems(cells: Iterable[Mapping]) -> list[str]:
    """``"cell N: problem"`` for every problem in an executed notebook's code cells (N counts code
    cells from 0, as nbval numbers them)."""
    code = [c for c in cells if c.get("cell_type") == "code"]
    return [f"cell {i}: {p}" for i, c in enumerate(code) for p in output_problems(c.get("outputs", []))]
