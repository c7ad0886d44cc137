"""Batch reproduction of the notebook series with papermill.

Each notebook records its headline numbers with :func:`record_headlines`; :func:`run_series`
executes every notebook headless with the same parameters, keeps going when one fails,
and writes into ``output_dir``: executed notebooks, figures (PNG + SVG, saved by the
notebooks), ``summary.csv`` / ``summary.md`` (headline numbers with config, seed and
package versions) and ``runs.csv`` (status and minutes per notebook).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from .results import environment_info, write_json
from .series import series


def _kernel_manager():
    """The kernel manager papermill starts each notebook's kernel with: local sockets (IPC) where the OS
    has them, so the kernel has no TCP port to warn about (or to expose) on a shared machine."""
    import os

    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum

    if os.name != "posix":
        return AsyncKernelManager

    class LocalSocketKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

    return LocalSocketKernelManager


def record_headlines(output_dir: str | Path, notebook: str, numbers: dict[str, float]) -> None:
    """Save a notebook's headline numbers (name -> value) to ``<output_dir>/summary/<notebook>.json``
    for the series summary."""
    write_json({k: float(v) for k, v in numbers.items()}, Path(output_dir) / "summary" / f"{notebook}.json")


def summary_table(output_dir: str | Path) -> pd.DataFrame:
    """Tidy table of every recorded headline number: notebook, name, value."""
    rows = []
    for path in sorted((Path(output_dir) / "summary").glob("*.json")):
        rows += [{"notebook": path.stem, "name": k, "value": v} for k, v in json.loads(path.read_text()).items()]
    return pd.DataFrame(rows, columns=["notebook", "name", "value"])


def run_series(output_dir: str | Path, parameters: dict, notebooks: list[Path] | None = None,
               kernel_name: str | None = None, progress: bool = True) -> pd.DataFrame:
    """Execute ``notebooks`` (default: the whole series) with ``parameters``; returns runs table.

    A failing notebook is recorded with its error and does not stop the others.
    """
    import papermill

    out = Path(output_dir).resolve()
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    parameters = {**parameters, "output_dir": str(out)}
    runs = []
    for nb in tqdm(notebooks or series(), desc="notebooks", disable=not progress, unit="nb"):
        start, status, error = time.perf_counter(), "ok", ""
        try:
            papermill.execute_notebook(str(nb), str(out / "notebooks" / nb.name), parameters=parameters,
                                       cwd=str(nb.parent), progress_bar=False, kernel_name=kernel_name,
                                       kernel_manager_class=_kernel_manager())
        except Exception as err:  # papermill raises PapermillExecutionError with the cell's error
            status = "failed"
            error = f"{getattr(err, 'ename', type(err).__name__)}: {getattr(err, 'evalue', err)}"
        minutes = (time.perf_counter() - start) / 60
        runs.append({"notebook": nb.stem, "status": status, "minutes": round(minutes, 2), "error": error})
        if progress:
            tqdm.write(f"[{status}] {nb.stem} ({minutes:.1f} min){' ' + error if error else ''}")
    table = pd.DataFrame(runs)
    table.to_csv(out / "runs.csv", index=False)
    summary = summary_table(out)
    summary.to_csv(out / "summary.csv", index=False)
    meta = {"parameters": parameters, "environment": environment_info(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json(meta, out / "summary.meta.json")
    lines = ["# fmlbd notebook series: headline numbers", "",
             f"Parameters: `{json.dumps(parameters)}`", "",
             "Environment: " + ", ".join(f"{k} {v}" for k, v in meta["environment"].items()), "",
             "| notebook | number | value |", "|---|---|---|"]
    lines += [f"| {r.notebook} | {r.name} | {r.value:.4f} |" for r in summary.itertuples()]
    lines += ["", "| notebook | status | minutes | error |", "|---|---|---|---|"]
    lines += [f"| {r.notebook} | {r.status} | {r.minutes} | {r.error} |" for r in table.itertuples()]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    return table
