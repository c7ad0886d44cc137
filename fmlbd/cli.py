"""Command line: ``python -m fmlbd <command>`` (or the ``fmlbd`` entry point)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .config import ConfigError, PROFILES, load_config
from .data import OMNIGLOT_SOURCES, DatasetError


def _config(args):
    overrides = dict(kv.split("=", 1) for kv in args.set)
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.data_root is not None:
        overrides["data.root"] = args.data_root
    if args.results_dir is not None:
        overrides["results_dir"] = args.results_dir
    return load_config(args.profile, overrides)


def cmd_config(args) -> int:
    print(json.dumps(_config(args).to_dict(), indent=2))
    return 0


def cmd_download(args) -> int:
    from .data import download_omniglot

    for path in download_omniglot(args.root, args.source):
        print(f"ok  {path}")
    return 0


def cmd_train(args) -> int:
    """Benign federated meta-training, then main-task accuracy (mean, 95% CI) for 1 and 5 shots."""
    from .experiments import main_task_table, pretrain
    from .results import save_table

    cfg = _config(args)
    start = time.perf_counter()
    trained = pretrain(cfg, progress=not args.no_progress)
    table = main_task_table(cfg, trained, tuple(args.shots))
    minutes = (time.perf_counter() - start) / 60
    out = Path(cfg.results_dir) / cfg.profile / f"train-seed{cfg.seed}.csv"
    save_table(table, out, cfg.to_dict(), train_minutes=trained.minutes, total_minutes=minutes,
               checkpoint=str(trained.path))
    save_table(trained.log, out.with_name(f"train-log-seed{cfg.seed}.csv"), cfg.to_dict())
    for row in table.itertuples():
        print(f"{row.ways}-way {row.shots}-shot main-task accuracy: {row.value:.4f} +- {row.ci95:.4f} "
              f"(95% CI, {row.episodes} episodes)")
    print(f"training {trained.minutes:.2f} min (0 = cached), total {minutes:.2f} min; table: {out}")
    return 0


EXPERIMENTS = ("one-shot", "dampening", "finetune")  # "all"
ON_REQUEST = ("chance", "draws")  # the no-attack control; "after" over attack.draws draws of the adversary


def cmd_attack(args) -> int:
    """Run the attack experiments, save their tidy tables and figures, print the headline numbers."""
    from . import experiments, plots
    from .results import save_table

    cfg = _config(args)
    out = Path(cfg.results_dir) / cfg.profile
    chance = 1 / cfg.eval.ways
    chosen = EXPERIMENTS if "all" in args.experiment else args.experiment
    for name in chosen:
        start = time.perf_counter()
        if name == "one-shot":
            table = experiments.one_shot_attack(cfg, args.cases, not args.no_progress)
            plots.before_after_bars(table, "Global model right before and after the one-shot attack",
                                    out / "figures" / "one_shot_attack")
        elif name == "dampening":
            table = experiments.dampening(cfg, args.cases, not args.no_progress)
            plots.curves_by_case(table, "round", "benign rounds after the attack",
                                 "Federated dampening of a one-shot backdoor", out / "figures" / "dampening", chance)
        elif name == "chance":
            table = experiments.chance_control(cfg, args.cases, not args.no_progress)
        elif name == "draws":
            table = experiments.attack_draws(cfg, args.cases, not args.no_progress)
        else:
            table = experiments.finetune_failure(cfg, args.cases, not args.no_progress)
            plots.curves_by_case(table, "step", "fine-tuning steps on one episode",
                                 "Fine-tuning a poisoned local model", out / "figures" / "finetune_failure", chance,
                                 markevery=50)
        minutes = (time.perf_counter() - start) / 60
        save_table(table, out / f"{name}-seed{cfg.seed}.csv", cfg.to_dict(), minutes=minutes)
        print(f"== {name} ({minutes:.2f} min, incl. any training not yet cached)")
        x = {"one-shot": "phase", "dampening": "round", "finetune": "step", "chance": "images", "draws": "draw"}[name]
        print(table.pivot_table(index=["case", x], columns="metric", values="value").round(3).to_string())
    return 0


def cmd_defend(args) -> int:
    """Defense experiments: with/without defense, adaptive adversary, attention ablation, over rounds, cost."""
    from . import experiments, plots
    from .results import save_table

    cfg = _config(args)
    out = Path(cfg.results_dir) / cfg.profile
    progress = not args.no_progress
    start = time.perf_counter()
    comparison = experiments.defense_comparison(cfg, args.cases, progress)
    save_table(comparison, out / f"defense-seed{cfg.seed}.csv", cfg.to_dict())
    after = comparison[comparison["phase"] == "after"]
    plots.before_after_bars(after, "Right after the attack: fine-tuning vs local matching-network defense",
                            out / "figures" / "defense_after_attack", phase_col="method")
    print("== defense (right before / after the attack)")
    print(comparison.pivot_table(index=["case", "phase", "method"], columns="metric", values="value").round(3)
          .to_string())
    without_c = [c for c in args.cases if c != "c"] or args.cases  # draws and ablation: cases (a), (b)
    draws = experiments.defense_draws(cfg, without_c, progress)
    save_table(draws, out / f"defense-draws-seed{cfg.seed}.csv", cfg.to_dict())
    plots.draws_scatter(draws, f"Defended federation right after the attack, {cfg.attack.draws} draws of the adversary",
                        out / "figures" / "defense_draws", experiments.main_task_floor(comparison),
                        experiments.BACKDOOR_CEILING, group="update")
    print(f"== defended, right after the attack, over {cfg.attack.draws} draws of the adversary (mean, min, max)")
    print(draws.groupby(["case", "update", "metric"])["value"].agg(["mean", "min", "max"]).round(3).to_string())
    adaptive = experiments.adaptive_attack(cfg, args.cases, progress)
    save_table(adaptive, out / f"defense-adaptive-seed{cfg.seed}.csv", cfg.to_dict())
    print("== adaptive adversary (keyed images only among its queries), defended, right after the attack")
    print(adaptive.pivot_table(index="case", columns="metric", values="value").round(3).to_string())
    ablation = experiments.attention_ablation(cfg, without_c, progress)
    save_table(ablation, out / f"defense-ablation-seed{cfg.seed}.csv", cfg.to_dict())
    print("== attention ablation (right after the attack)")
    print(ablation.pivot_table(index=["shots", "kernel", "temperature", "case"], columns="metric",
                               values="value").round(3)
          .to_string())
    rounds = experiments.defense_over_rounds(cfg, args.cases, progress)
    save_table(rounds, out / f"defense-rounds-seed{cfg.seed}.csv", cfg.to_dict())
    plots.curves_by_case(rounds, "round", "benign rounds after the attack",
                         "Matching-network defense after the attack", out / "figures" / "defense_rounds",
                         1 / cfg.eval.ways)
    cost = experiments.inference_cost(cfg, progress=progress)
    save_table(cost, out / f"defense-cost-seed{cfg.seed}.csv", cfg.to_dict())
    print("== inference cost per query episode")
    print(cost.to_string(index=False))
    print(f"defense experiments: {(time.perf_counter() - start) / 60:.2f} min")
    return 0


def cmd_reproduce(args) -> int:
    """Run the notebook series headless with papermill; non-zero exit if any notebook failed."""
    from .reproduce import run_series, series

    cfg = _config(args)  # validates the profile and overrides before anything runs
    notebooks = series()
    if args.only:
        notebooks = [nb for nb in notebooks if any(key in nb.stem for key in args.only)]
        if not notebooks:
            raise ConfigError(f"no notebook matches {args.only}; available: {[nb.stem for nb in series()]}")
    params = {"profile": cfg.profile, "seed": cfg.seed, "dataset": cfg.data.dataset,
              "data_root": str(Path(cfg.data.root).resolve()), "results_dir": str(Path(cfg.results_dir).resolve())}
    output = Path(args.output or f"outputs/{cfg.profile}")
    start = time.perf_counter()
    runs = run_series(output, params, notebooks, progress=not args.no_progress)
    print(runs.to_string(index=False))
    print(f"series: {(time.perf_counter() - start) / 60:.2f} min; summary: {output / 'summary.md'}")
    return 0 if (runs["status"] == "ok").all() else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fmlbd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p):
        p.add_argument("--profile", default="quick", choices=sorted(PROFILES))
        p.add_argument("--seed", type=int, default=None)
        p.add_argument("--data-root", default=None, help="folder holding omniglot/ or mini-imagenet/")
        p.add_argument("--results-dir", default=None)
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. --set meta.inner_lr=0.1 (repeatable)")
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")
        return p

    with_config(sub.add_parser("config", help="print the resolved config as JSON")).set_defaults(func=cmd_config)
    p = with_config(sub.add_parser("train", help="benign federated meta-training + main-task accuracy"))
    p.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    p.set_defaults(func=cmd_train)
    p = with_config(sub.add_parser("attack", help="backdoor attack experiments (tables + figures)"))
    p.add_argument("--experiment", nargs="+", default=["all"], choices=("all",) + EXPERIMENTS + ON_REQUEST,
                   help="all = one-shot, dampening, finetune; chance = backdoor accuracy of the pre-attack "
                        "model on keyed vs clean attack images (the no-attack control); draws = right after the "
                        "attack, for each of attack.draws draws of the adversary")
    p.add_argument("--cases", nargs="+", default=["a", "b", "c"], choices=["a", "b", "c"])
    p.set_defaults(func=cmd_attack)
    p = with_config(sub.add_parser("defend", help="local matching-network defense experiments"))
    p.add_argument("--cases", nargs="+", default=["a", "b", "c"], choices=["a", "b", "c"])
    p.set_defaults(func=cmd_defend)
    p = with_config(sub.add_parser("reproduce", help="run every notebook headless (papermill) + summary"))
    p.add_argument("--output", default=None, help="output folder (default outputs/<profile>)")
    p.add_argument("--only", nargs="+", default=None, help="run only notebooks whose name contains one of these")
    p.set_defaults(func=cmd_reproduce)
    p = sub.add_parser("download", help="download and MD5-verify a dataset")
    p.add_argument("dataset", choices=["omniglot"])
    p.add_argument("--source", default="minimal", choices=sorted(OMNIGLOT_SOURCES))
    p.add_argument("--root", default="data")
    p.set_defaults(func=cmd_download)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, DatasetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
