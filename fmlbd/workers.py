"""Pre-training several models side by side, one single-threaded worker process per core.

:func:`~fmlbd.pipeline.pretrain` trains on one torch thread (so a model never depends on the core
count), so side by side is how a multi-core machine is used. Workers die with their parent: on
Linux the kernel sends them SIGTERM when the parent dies, and an interrupted parent (Ctrl-C,
SIGTERM) terminates them before it exits. Every worker checkpoints, so a rerun resumes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tqdm.auto import tqdm

from .builders import build_scenario
from .config import ExperimentConfig, config_from_dict
from .parallel import die_with_parent
from .pipeline import is_pretrained, pretrain, pretrain_path


def missing_models(configs, cases) -> dict:
    """``{cache folder: (config, case)}`` of the pre-trained models not cached yet."""
    missing = {}
    for c in configs:
        for case in cases:
            path = pretrain_path(c, build_scenario(c, case))
            if not is_pretrained(c, path):
                missing.setdefault(path, (c, case))
    return missing


def pretrain_cases(cfg: ExperimentConfig, cases, progress: bool = True, workers: int | None = None,
                   also: ExperimentConfig | None = None) -> None:
    """Make sure the pre-trained model of every case in ``cases`` is cached (for ``cfg`` and, if
    given, for ``also``), training the missing ones side by side in ``workers`` fresh Python
    processes (default: one per missing model, at most one per CPU core). A single missing model
    is left to :func:`~fmlbd.pipeline.pretrain` in the calling process."""
    missing = missing_models((cfg,) if also is None else (cfg, also), cases)
    n = min(len(missing), workers or os.cpu_count() or 1)
    if n <= 1:
        return
    if progress:
        names = ", ".join(f"({case}) {c.meta.algorithm}" for c, case in missing.values())
        tqdm.write(f"pre-training {names} in {n} parallel processes")
    pending = list(missing.values())
    while pending:
        batch, pending = pending[:n], pending[n:]
        procs = []
        try:
            for i, (c, case) in enumerate(batch):
                proc = subprocess.Popen([sys.executable, "-m", "fmlbd.workers", str(i)], stdin=subprocess.PIPE,
                                        text=True, preexec_fn=die_with_parent, env=os.environ | {"FMLBD_WORKERS": "1"})
                procs.append(proc)
                proc.stdin.write(json.dumps({"config": c.to_dict(), "case": case, "progress": progress}))
                proc.stdin.close()
            failed = [case for proc, (c, case) in zip(procs, batch) if proc.wait() != 0]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait()
        if failed:
            raise RuntimeError(f"pre-training of case(s) {failed} failed (see the error above); rerun to resume "
                               f"from the last checkpoint")


def main(position: int) -> None:
    """Entry point of a worker process: the job as JSON on stdin."""
    job = json.loads(sys.stdin.read())
    pretrain(config_from_dict(job["config"]), job["case"], job["progress"], position)


if __name__ == "__main__":
    main(int(sys.argv[1]))
