"""Running the pipeline's stages side by side: missing pre-trained models in fresh Python processes,
then attacks or rounds after them in forked workers, one single-threaded process per core.

:func:`~fmlbd.pipeline.pretrain` trains on one torch thread (so a model never depends on the core
count), so side by side is how a multi-core machine is used. Workers die with their parent: on
Linux the kernel sends them SIGTERM when the parent dies, and an interrupted parent (Ctrl-C,
SIGTERM) terminates them before it exits. Every pre-training checkpoints, so a rerun resumes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

from tqdm import tqdm

from .builders import build_scenario
from .config import ExperimentConfig, config_from_dict
from .parallel import die_with_parent, pmap
from .pipeline import attack, attack_path, dampening_path, dampening_snapshots, is_pretrained, pretrain, pretrain_path


def _missing(jobs) -> dict:
    """``{cache folder: (config, case)}`` of the pre-trained models of ``jobs`` not cached yet."""
    missing = {}
    for c, case in jobs:
        scenario = build_scenario(c, case)
        if not is_pretrained(c, scenario):
            missing.setdefault(pretrain_path(c, scenario), (c, case))
    return missing


def missing_models(configs, cases) -> dict:
    """``{cache folder: (config, case)}`` of the pre-trained models not cached yet."""
    return _missing([(c, case) for c in configs for case in cases])


def pretrain_jobs(jobs, progress: bool = True, workers: int | None = None) -> None:
    """Make sure the pre-trained model of every ``(config, case)`` of ``jobs`` is cached, training the
    missing ones side by side in ``workers`` fresh Python processes (default: one per missing model,
    at most one per CPU core). A single missing model is left to :func:`~fmlbd.pipeline.pretrain`
    in the calling process."""
    missing = _missing(jobs)
    n = min(len(missing), workers or os.cpu_count() or 1)
    if n <= 1:
        return
    names = ", ".join(f"({case}) {c.meta.algorithm} {c.federation.aggregation}" for c, case in missing.values())
    bar = tqdm(total=sum(c.federation.rounds for c, _ in missing.values()), unit="round", disable=not progress,
               desc=f"pre-training {len(missing)} models, {n} side by side")
    if progress:
        tqdm.write(f"pre-training {names} in {n} parallel processes")
    pending = list(missing.values())
    while pending:
        batch, pending = pending[:n], pending[n:]
        procs, readers = [], []
        try:
            for c, case in batch:
                proc = subprocess.Popen([sys.executable, "-m", "fmlbd.workers"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, preexec_fn=die_with_parent,
                                        env=os.environ | {"FMLBD_WORKERS": "1"})
                procs.append(proc)
                proc.stdin.write(json.dumps({"config": c.to_dict(), "case": case}))
                proc.stdin.close()
                readers.append(threading.Thread(target=_count_rounds, args=(proc.stdout, bar), daemon=True))
                readers[-1].start()
            failed = [case for proc, (c, case) in zip(procs, batch) if proc.wait() != 0]
            for reader in readers:
                reader.join()
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait()
        if failed:
            bar.close()
            raise RuntimeError(f"pre-training of case(s) {failed} failed (see the error above); rerun to resume "
                               f"from the last checkpoint")
    bar.close()


def _count_rounds(stream, bar) -> None:
    """Advance the shared ``bar`` by the rounds a worker reports, one round number per line on ``stream``."""
    last = 0
    for line in stream:
        done = int(line)
        bar.update(done - last)
        last = done


def pretrain_cases(cfg: ExperimentConfig, cases, progress: bool = True, workers: int | None = None,
                   also: ExperimentConfig | None = None) -> None:
    """:func:`pretrain_jobs` for every case in ``cases``, of ``cfg`` and, if given, of ``also``."""
    pretrain_jobs([(c, case) for c in ((cfg,) if also is None else (cfg, also)) for case in cases], progress, workers)


#: the stages :func:`cache_side_by_side` runs, with the file each one caches its result in
_CACHED_FILE = {attack: lambda cfg, case: attack_path(cfg, case) / "attacked.pt", dampening_snapshots: dampening_path}


def cache_side_by_side(stage, jobs, progress: bool = True) -> None:
    """Cache the result of ``stage`` (:func:`~fmlbd.pipeline.attack` or
    :func:`~fmlbd.pipeline.dampening_snapshots`) for every ``(config, case)`` of ``jobs``: first the
    pre-trained models that the missing results start from (:func:`pretrain_jobs`), then those results
    side by side (one single-thread process each, :func:`~fmlbd.parallel.pmap`), so that the ``stage``
    calls that follow load them. Jobs that share a result (cases (a) and (c)) compute it once."""
    missing = {}
    for cfg, case in jobs:
        missing.setdefault(_CACHED_FILE[stage](cfg, case), (cfg, case))
    missing = [job for path, job in missing.items() if not path.is_file()]
    if len(missing) <= 1:  # nothing to gain: the stage's own call computes it (and its model) with progress
        return
    pretrain_jobs(missing, progress)
    for cfg, case in _missing(missing).values():  # a single missing model, left by pretrain_jobs: trained here
        pretrain(cfg, case, progress)
    if progress:
        tqdm.write(f"{stage.__name__}: {len(missing)} runs side by side")

    def compute(job) -> None:  # the result stays in the cache, not sent back
        stage(*job, progress=False)

    pmap(compute, missing)


def main() -> None:
    """Entry point of a worker process: the job as JSON on stdin; each round trained is reported as its
    number on a line of stdout (the parent's one progress bar counts them)."""
    job = json.loads(sys.stdin.read())
    pretrain(config_from_dict(job["config"]), job["case"], progress=False,
             on_round=lambda r: print(r, flush=True))


if __name__ == "__main__":
    main()
