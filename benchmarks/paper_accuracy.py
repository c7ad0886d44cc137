"""The paper profile's benign federated model on full Omniglot: main-task accuracy on the 20 evaluation
alphabets against training minutes, and the final model's 5-way and 20-way accuracy with 95% CIs.

    python benchmarks/paper_accuracy.py [--data DIR] [--results-dir DIR] [--curve-episodes 50]
                                        [--five-shot-episodes 600] [--set KEY=VALUE ...]

1. Trains (or loads) the paper profile's benign model with ``fmlbd.pipeline.pretrain`` (cached and
   resumable) and keeps a copy of the global model at every log point (``eval.log_every`` rounds),
   with the training seconds it took to get there (the short accuracy logs included).
2. Scores each copy on ``--curve-episodes`` 5-way and 20-way 1-shot episodes (after training,
   so scoring never counts as training time): accuracy against minutes, saved as a table and a figure.
3. Scores the final model on ``eval.episodes`` 1-shot episodes and ``--five-shot-episodes``
   5-shot episodes, 5-way and 20-way (non-transductive, ``eval.finetune_steps`` SGD steps).

Everything lands in ``<results-dir>/paper/``: ``paper-accuracy-seed<seed>.csv`` (final),
``paper-curve-seed<seed>.csv`` (the curve) and ``figures/paper_accuracy_vs_minutes.{png,svg}``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from fmlbd.builders import build_scenario
from fmlbd.config import load_config, parse_overrides, with_overrides
from fmlbd.evaluation import main_task_table
from fmlbd.pipeline import pretrain, pretrain_path
from fmlbd.plots import save
from fmlbd.results import atomic_torch_save, load_torch, save_table


def curve(cfg, model, scenario, snapshots: Path, episodes: int) -> pd.DataFrame:
    """5- and 20-way 1-shot accuracy (mean, 95% CI) of every kept copy of the global model."""
    at = with_overrides(cfg, {"eval.episodes": episodes})
    tables = []
    for path in sorted(snapshots.glob("round-*.pt")):
        saved = load_torch(path)
        table = main_task_table(at, model, saved["params"], scenario, (1,), (5, 20))
        tables.append(table.assign(round=saved["round"], minutes=saved["seconds"] / 60))
    return pd.concat(tables, ignore_index=True)[["round", "minutes", "ways", "shots", "episodes", "value", "ci95"]]


def figure(table: pd.DataFrame, path: Path, reference: dict[int, float]) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for (ways, part), color in zip(table.groupby("ways"), ("tab:blue", "tab:green")):
        ax.errorbar(part["minutes"], part["value"], yerr=part["ci95"], marker="o", color=color, capsize=3,
                    label=f"{ways}-way 1-shot (federated, this run)")
        ax.axhline(reference[ways], color=color, linestyle=":", label=f"{ways}-way 1-shot, Reptile paper")
    ax.set(xlabel="training minutes", ylabel="main-task accuracy (evaluation alphabets)",
           title="Paper profile on full Omniglot")
    ax.legend(fontsize=8, loc="lower right")
    save(fig, path)
    plt.close(fig)


#: Reptile (Nichol et al. 2018), Omniglot, non-transductive, 1-shot: the field's reference for this network
REPTILE_1SHOT = {5: 0.9539, 20: 0.8814}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data", help="data root holding omniglot/ with the full zips")
    parser.add_argument("--results-dir", default="results")
    parser.add_argument("--curve-episodes", type=int, default=50, help="episodes per point of the curve")
    parser.add_argument("--five-shot-episodes", type=int, default=None, help="5-shot episodes (default eval.episodes)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = parser.parse_args()
    cfg = load_config("paper", {"data.root": args.data, "results_dir": args.results_dir,
                                **parse_overrides(args.set)})
    snapshots = pretrain_path(cfg, build_scenario(cfg)) / "snapshots"

    def keep(round_: int, seconds: float, params) -> None:
        atomic_torch_save({"round": round_, "seconds": seconds, "params": params}, snapshots / f"round-{round_:06d}.pt")

    trained = pretrain(cfg, on_log=keep)
    log = trained.log
    print(f"training: {log['time_s'].iloc[-1] / 60:.2f} min for {cfg.federation.rounds} rounds "
          f"(this call trained {trained.minutes:.2f} min; 0 = cached)", flush=True)
    out = Path(cfg.results_dir) / cfg.profile
    start = time.perf_counter()
    final = pd.concat([main_task_table(cfg, trained.model, trained.params, trained.scenario, (1,), (5, 20)),
                       main_task_table(with_overrides(cfg, {"eval.episodes": args.five_shot_episodes or cfg.eval.episodes}),
                                       trained.model, trained.params, trained.scenario, (5,), (5, 20))])
    final["train_minutes"] = log["time_s"].iloc[-1] / 60
    save_table(final, out / f"paper-accuracy-seed{cfg.seed}.csv", cfg.to_dict())
    print(final.to_string(index=False), f"\n(scored in {(time.perf_counter() - start) / 60:.2f} min)", flush=True)
    table = curve(cfg, trained.model, trained.scenario, snapshots, args.curve_episodes)
    save_table(table, out / f"paper-curve-seed{cfg.seed}.csv", cfg.to_dict())
    figure(table, out / "figures" / "paper_accuracy_vs_minutes", REPTILE_1SHOT)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
