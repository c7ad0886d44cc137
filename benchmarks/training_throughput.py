"""Images per second of the federation's local training, on one core and on every core, against
the per-core ceiling of a plain PyTorch loop; all measured in this one run, on this machine.

    python benchmarks/training_throughput.py [--profile quick|paper] [--rounds N] [--data DIR] [--device cuda]

- plain loop: the same network (``fmlbd.models.ConvNet``) as an ``nn.Module``, forward + backward +
  ``torch.optim.SGD`` step on random batches of ``meta.inner_batch`` images, one torch thread: the
  rate one core reaches without any of fmlbd's machinery (the ceiling per core).
- federation, 1 worker: ``--rounds`` benign rounds of the profile's federation, every local
  training in this process on one thread.
- federation, all cores: the same rounds with the clients of a round side by side in worker
  processes (:func:`fmlbd.parallel.workers_for`); the final weights are compared bit for bit
  with the one-worker run.
- ``--device``: the same rounds once more on that torch device (e.g. a GPU), in a child process, and
  the largest weight difference from the CPU's one-worker run (the devices round differently). The
  CPU runs hide the GPU (``CUDA_VISIBLE_DEVICES=``): forked workers cannot use autograd once it
  has started GPU threads (:func:`fmlbd.parallel.gpu_visible`).

Images counted: each meta-step trains ``meta.inner_steps`` steps of ``meta.inner_batch`` images;
a round restarts ``federation.buffer_size`` clients of ``meta.local_iterations`` meta-steps each.
Training settings come from the profile; the images from the minimal Omniglot zips (same image
size as the full set, so the same cost per image).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from fmlbd import builders, parallel
from fmlbd.config import load_config, with_overrides
from fmlbd.models import ConvNet


def plain_loop(cfg, seconds: float = 10.0) -> float:
    """Images/s of forward + backward + SGD of ConvNet on one thread."""
    torch.manual_seed(0)
    batch = cfg.meta.inner_batch or cfg.meta.ways * (cfg.meta.shots + cfg.meta.queries)
    net = ConvNet(1, cfg.model.filters, cfg.meta.ways, cfg.data.image_size)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.meta.inner_lr)
    x = torch.rand(batch, 1, cfg.data.image_size, cfg.data.image_size)
    y = torch.randint(0, cfg.meta.ways, (batch,))
    with parallel.one_thread():
        for _ in range(20):  # warm-up
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
            steps += 1
    return steps * batch / (time.perf_counter() - start)


def federation_rate(cfg, rounds: int, workers: int) -> tuple[float, dict]:
    """Images/s of ``rounds`` benign rounds with ``workers`` processes, and the final weights."""
    scenario = builders.build_scenario(cfg)
    model = builders.build_model(cfg, scenario)
    fed = builders.make_federation(cfg, model, builders.initial_params(cfg, model),
                                   builders.benign_clients(cfg, scenario), workers)
    fed.step()  # warm-up: starts every client (and the worker processes)
    m = cfg.meta
    images_per_update = m.local_iterations * m.inner_steps * (m.inner_batch or m.ways * (m.shots + m.queries))
    started, start = 0, time.perf_counter()
    for _ in range(rounds):
        started += len(fed.step().clients)  # each aggregated client starts again at the next step
    seconds = time.perf_counter() - start
    fed.close()
    return started * images_per_update / seconds, fed.params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper", help="training settings of this profile (default paper)")
    parser.add_argument("--rounds", type=int, default=40, help="rounds timed per federation run (default 40)")
    parser.add_argument("--data", default="data", help="data root holding omniglot/ (default data)")
    parser.add_argument("--device", default=None, help="also time one process on this torch device, e.g. cuda")
    parser.add_argument("--save-to", default=None, help=argparse.SUPPRESS)  # internal: the --device child
    args = parser.parse_args()
    cfg = load_config(args.profile, {"data.root": args.data, "data.source": "minimal",
                                     "data.test_alphabets": ["Sanskrit", "Tagalog"]})
    if args.save_to:  # the child: time the rounds on --device, save rate and weights
        rate, params = federation_rate(with_overrides(cfg, {"device": args.device}), args.rounds, 1)
        torch.save((rate, {k: v.cpu() for k, v in params.items()}), args.save_to)
        return
    device_run = None
    if args.device:
        with tempfile.TemporaryDirectory() as tmp:
            saved = Path(tmp) / "device.pt"
            subprocess.run([sys.executable, __file__, "--profile", args.profile, "--rounds", str(args.rounds),
                            "--data", args.data, "--device", args.device, "--save-to", str(saved)], check=True)
            device_run = torch.load(saved)
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch looks for a GPU: the CPU runs fork workers
    cores = parallel.cpu_workers()
    workers = parallel.workers_for(cfg.federation.clients)
    print(f"profile {args.profile}: {cfg.federation.clients} clients, buffer {cfg.federation.buffer_size}, "
          f"{cfg.meta.local_iterations} meta-step(s) x {cfg.meta.inner_steps} steps x {cfg.meta.inner_batch} images "
          f"per update; {cores} cores, {workers} worker processes; torch {torch.__version__}")
    ceiling = plain_loop(cfg)
    one, params_one = federation_rate(cfg, args.rounds, 1)
    every, params_every = federation_rate(cfg, args.rounds, workers)
    identical = all(torch.equal(params_one[k], params_every[k]) for k in params_one)
    print(f"plain PyTorch loop, 1 thread (per-core ceiling): {ceiling:8.0f} images/s")
    print(f"federation, 1 worker:                            {one:8.0f} images/s  ({one / ceiling:.2f} of the ceiling)")
    print(f"federation, {cores} cores:                          {every:8.0f} images/s  "
          f"({every / cores / ceiling:.2f} of the ceiling per core)")
    print(f"speed-up on {cores} cores: {every / one:.2f}x; weights bit-identical to the 1-worker run: {identical}")
    if device_run is not None:
        rate, params = device_run
        gap = max(float((params[k].cpu() - params_one[k]).abs().max()) for k in params_one)
        scale = max(float(params_one[k].abs().max()) for k in params_one)
        print(f"federation on {args.device}, 1 process:          {rate:8.0f} images/s  ({rate / one:.2f}x 1 worker, "
              f"{rate / every:.2f}x {cores} cores); largest weight difference from the CPU run {gap:.2e} "
              f"(largest weight {scale:.2f})")


if __name__ == "__main__":
    main()
