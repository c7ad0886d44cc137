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
