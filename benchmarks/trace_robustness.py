"""What the shipped-model check tolerates and what it catches, measured in one run on this machine.

    python benchmarks/trace_robustness.py [--models N] [--float32] [--data DIR]

Each shipped model carries the :func:`fmlbd.fingerprint.reference_trace` of the code that trained
it (the float32 initial weights' norms, and the weights' norms after ``TRACE_ROUND`` rounds computed
in float64); ``tests/test_pretrained.py`` recomputes it and fails when a part differs by more than
its ``TRACE_RTOL``. This script recomputes it for the first ``--models`` shipped models in child
processes:

- under each way of rounding this machine offers (other CPU families round differently, and so do
  these): PyTorch's own kernels (``ATEN_CPU_CAPABILITY``), oneDNN's and MKL's instruction sets
  (``ONEDNN_MAX_CPU_ISA``, ``MKL_CBWR``). Each must stay within ``TRACE_RTOL``.
- with a planted change of what the code trains, under the first two settings: one inner step more,
  the federation's random streams from another seed, the inner learning rate off by one part per
  million, the initial weights from another seed. Each must exceed it.

``--float32`` also prints the largest difference between the float32 weights' norms after the same
rounds under each setting and under the first one: the spread that a float32 trace would have to
tolerate on this one machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fmlbd import builders, federated, fingerprint, meta, pipeline  # noqa: E402
from fmlbd.config import config_from_dict, with_overrides  # noqa: E402
from fmlbd.fingerprint import TRACE_RTOL, trace_difference  # noqa: E402
from fmlbd.results import load_torch  # noqa: E402
from fmlbd.shipped import SHIPPED  # noqa: E402

#: name -> environment of the child (set before torch is imported); the first is the machine's own
ROUNDINGS = {
    "as is": {},
    "ATEN_CPU_CAPABILITY=default": {"ATEN_CPU_CAPABILITY": "default"},
    "ATEN_CPU_CAPABILITY=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "ATEN_CPU_CAPABILITY=avx512": {"ATEN_CPU_CAPABILITY": "avx512"},
    "ONEDNN_MAX_CPU_ISA=SSE41": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    "MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
    "MKL_CBWR=AVX": {"MKL_CBWR": "AVX"},
}


def _more_inner_steps():
    step = meta.meta_step
    meta.meta_step = lambda model, params, episode, cfg, rng: step(
        model, params, episode, dataclasses.replace(cfg, inner_steps=cfg.inner_steps + 1), rng)


def _other_streams():
    streams = federated.random_streams
    federated.random_streams = lambda seed, clients: streams(seed + 1, clients)


def _inner_lr_ppm():
    step = meta.meta_step
    meta.meta_step = lambda model, params, episode, cfg, rng: step(
        model, params, episode, dataclasses.replace(cfg, inner_lr=cfg.inner_lr * (1 + 1e-6)), rng)


def _other_init():
    seed = builders.seed_model_init
    builders.seed_model_init = lambda s: seed(s + 1)


#: name -> a change of what the code trains, planted in the child before it trains
PLANTS = {"one inner step more": _more_inner_steps, "other random streams": _other_streams,
          "inner lr + 1 ppm": _inner_lr_ppm, "init from another seed": _other_init}


def shipped(models: int) -> list[Path]:
    return sorted(SHIPPED.glob("*.pt"))[:models]


def child(models: int, data: str, plant: str | None, float32: bool) -> None:
    """Print ``{model: {"init": trace, "trained": trace, "float32": trace}}`` as JSON."""
    if plant:
        PLANTS[plant]()
    out = {}
    for path in shipped(models):
        saved = load_torch(path)
        cfg = with_overrides(config_from_dict(saved["config"]),
                             {"data.root": data, "results_dir": tempfile.gettempdir(), "shipped_models": False})
        out[path.stem] = fingerprint.reference_trace(cfg)
        if float32:
            with tempfile.TemporaryDirectory() as fresh:  # trained here, never read from a cache
                short = pipeline.pretrain(with_overrides(cfg, {"federation.rounds": fingerprint.TRACE_ROUND,
                                                               "results_dir": fresh}), progress=False)
            out[path.stem]["float32"] = fingerprint.trace(short.params)
    print("JSON" + json.dumps(out))


def run(env: dict, models: int, data: str, plant: str | None, float32: bool) -> dict | None:
    args = [sys.executable, __file__, "--child", "--models", str(models), "--data", data] + \
        (["--plant", plant] if plant else []) + (["--float32"] if float32 else [])
    done = subprocess.run(args, env=os.environ | env, capture_output=True, text=True)
    line = [x for x in done.stdout.splitlines() if x.startswith("JSON")]
    if done.returncode or not line:
        print(f"  failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
        return None
    return json.loads(line[0][4:])


def capability(env: dict) -> str:
    probe = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    done = subprocess.run([sys.executable, "-c", probe], env=os.environ | env, capture_output=True, text=True)
    return done.stdout.strip() or "?"


def cpu_has(capability: str) -> bool:
    """Whether this CPU has the instructions of ATen's ``capability`` (torch reports an asked-for
    capability even where the CPU lacks it, and then dies of an illegal instruction)."""
    needs = {"default": set(), "avx2": {"avx2", "fma"}, "avx512": {"avx512f", "avx512bw", "avx512vl", "avx512dq"}}
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:  # not Linux: let torch decide
        return True
    return needs.get(capability, set()) <= flags


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=len(shipped(10 ** 6)))
    ap.add_argument("--data", default=str(ROOT / "data"))
    ap.add_argument("--float32", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--plant", choices=sorted(PLANTS), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.models < 1:
        ap.error(f"--models must be >= 1, not {a.models}")
    if a.child:
        return child(a.models, a.data, a.plant, a.float32)

    files = shipped(a.models)
    refs = {p.stem: load_torch(p)["trace"] for p in files}
    parts = list(TRACE_RTOL)
    print(f"{len(files)} shipped models; torch {torch.__version__}; largest relative difference from the shipped "
          f"reference trace, per part (TRACE_RTOL: {', '.join(f'{k} {v:.0e}' for k, v in TRACE_RTOL.items())})\n")
    print(f"{'rounding':30s} {'kernels':8s}" + "".join(f" {p:>10s}" for p in parts)
          + (f" {'float32 vs first':>17s}" if a.float32 else ""))
    first32, worst = None, {p: 0.0 for p in parts}
    for name, env in ROUNDINGS.items():
        if not cpu_has(env.get("ATEN_CPU_CAPABILITY", "default")):
            print(f"{name:30s} {'-':8s} (this CPU lacks its instructions)")
            continue
        cap = capability(env)
        got = run(env, a.models, a.data, None, a.float32)
        if got is None:
            continue
        diffs = {p: max(trace_difference(got[m][p], refs[m][p]) for m in refs) for p in parts}
        worst = {p: max(worst[p], diffs[p]) for p in parts}
        line = f"{name:30s} {cap:8s}" + "".join(f" {diffs[p]:10.1e}" for p in parts)
        if a.float32:
            first32 = first32 or got
            line += f" {max(trace_difference(got[m]['float32'], first32[m]['float32']) for m in refs):17.1e}"
        print(line, flush=True)

    print(f"\n{'planted change':30s} {'rounding':30s} least-caught model's largest difference / TRACE_RTOL")
    for plant in PLANTS:
        for name in list(ROUNDINGS)[:2]:
            got = run(ROUNDINGS[name], a.models, a.data, plant, False)
            if got is None:
                continue
            ratio = min(max(trace_difference(got[m][p], refs[m][p]) / TRACE_RTOL[p] for p in parts) for m in refs)
            print(f"{plant:30s} {name:30s} {ratio:.1e}", flush=True)
    print("\nlargest difference without a change, / TRACE_RTOL: "
          + ", ".join(f"{p} {worst[p] / TRACE_RTOL[p]:.1e}" for p in parts))


if __name__ == "__main__":
    main()
