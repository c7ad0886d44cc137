"""Command line: ``python -m fmlbd <command>`` (or the ``fmlbd`` entry point).

Every bad setting ends as one line ``error: ...`` and exit code 2, before any work starts.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from .checks import CASES, OMNIGLOT_SOURCES
from .config import PROFILES, load_config, parse_overrides, with_overrides
from .errors import CacheError, ConfigError, DatasetError
from .series import series

#: errors a user can act on, printed as one line (TrainingDiverged is a ConfigError)
USER_ERRORS = (ConfigError, DatasetError, CacheError, FileExistsError, FileNotFoundError, PermissionError)


def _config(args):
    overrides = parse_overrides(args.set)
    for key, value in (("seed", args.seed), ("data.root", args.data_root), ("results_dir", args.results_dir),
                       ("device", args.device)):
        if value is not None:
            overrides[key] = value
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
    """Benign federated meta-training, then main-task accuracy (mean, 95% CI) for each of ``--ways`` x ``--shots``."""
    cfg = _config(args)  # before torch loads: a bad setting fails at once
    ways = tuple(args.ways or (cfg.eval.ways,))
    widest = with_overrides(cfg, {"eval.ways": max(ways), "eval.shots": max(args.shots)})
    from .builders import build_scenario
    from .evaluation import main_task_table
    from .pipeline import pretrain
    from .results import save_table

    build_scenario(widest)  # the meta-test classes can serve every episode asked for, before training
    start = time.perf_counter()
    trained = pretrain(cfg, progress=not args.no_progress)
    table = main_task_table(cfg, trained.model, trained.params, trained.scenario, tuple(args.shots), ways)
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


def cmd_experiments(args) -> int:
    """Run the chosen experiments of the command (registry order), save their tables and figures,
    print each table."""
    cfg = _config(args)
    from . import registry
    from .results import save_table

    chosen = registry.names(args.command, default_only=True) if "all" in args.experiment else args.experiment
    offered = registry.names(args.command)
    for name in chosen:
        if registry.get(name).command != args.command:
            raise ConfigError(f"{name!r} is an experiment of `{registry.get(name).command}`; `{args.command}` runs "
                              f"{', '.join(offered)}")
    out = Path(cfg.results_dir) / cfg.profile
    for name in chosen:
        spec = registry.get(name)
        cases = spec.cases
        if args.cases:  # the spec's own cases among those asked for, else those asked for
            cases = tuple(c for c in spec.cases if c in args.cases) or tuple(args.cases)
        start = time.perf_counter()
        table = spec(cfg, cases, not args.no_progress)
        if spec.figure is not None:
            spec.figure(table, cfg, out / "figures" / name.replace("-", "_"))
        minutes = (time.perf_counter() - start) / 60
        save_table(table, out / f"{name}-seed{cfg.seed}.csv", cfg.to_dict(), minutes=minutes)
        print(f"== {name}: {spec.summary} ({minutes:.2f} min, incl. any training not yet cached)")
        print(spec.show(table).to_string())
    return 0


def cmd_reproduce(args) -> int:
    """Run the notebook series headless with papermill; non-zero exit if any notebook failed."""
    if args.retrain:
        args.set = [*args.set, "shipped_models=false"]
    cfg = _config(args)  # validates the profile and overrides before anything runs
    if cfg.device != "cpu":
        from .builders import check_device

        check_device(cfg.device)
    notebooks = series()
    if args.only:
        notebooks = [nb for nb in notebooks if any(key in nb.stem for key in args.only)]
        if not notebooks:
            raise ConfigError(f"no notebook matches {args.only}; available: {[nb.stem for nb in series()]}")
    from .reproduce import run_series

    params = {"profile": cfg.profile, "seed": cfg.seed, "dataset": cfg.data.dataset,
              "data_root": str(Path(cfg.data.root).resolve()), "results_dir": str(Path(cfg.results_dir).resolve()),
              "overrides": {k: v for k, v in parse_overrides(args.set).items()
                            if k not in ("seed", "data.root", "data.dataset", "results_dir")}
              | ({"device": cfg.device} if cfg.device != "cpu" else {})}
    output = Path(args.output or f"outputs/{cfg.profile}")
    start = time.perf_counter()
    runs = run_series(output, params, notebooks, progress=not args.no_progress)
    print(runs.to_string(index=False))
    print(f"series: {(time.perf_counter() - start) / 60:.2f} min; summary: {output / 'summary.md'}")
    if not args.no_site:
        print(f"site: {_site(output)}")
    return 0 if (runs["status"] == "ok").all() else 1


def _site(output: Path) -> str:
    """Build the run's site, or say in one line why not (the site extra is optional)."""
    try:
        from .site import build_site
    except ImportError:
        return "not built: install the site extra (pip install -e \".[site]\"), then `python -m fmlbd site`"
    return str(build_site(output) / "index.html")


def cmd_site(args) -> int:
    """Build the rendered site of a finished run."""
    from .site import build_site

    print(build_site(args.output) / "index.html")
    return 0


def cmd_notebooks(args) -> int:
    """Write the series (and solutions/) to a folder, to open it outside a checkout."""
    from .series import write_notebooks

    from .paths import user_folder

    written = write_notebooks(args.folder, args.overwrite)
    print(f"wrote {len(written)} notebooks to {Path(args.folder).resolve()}; start with {written[0].name} "
          f"(data and results go to {user_folder()} unless set: see fmlbd.paths)")
    return 0


def cmd_lab(args) -> int:
    """Write the course lab: otter-grader masters, student notebooks, solutions, autograder zips."""
    from importlib.util import find_spec

    if find_spec("otter") is None:
        raise FileNotFoundError("the lab needs otter-grader: install the lab extra (pip install \"fmlbd[lab]\")")
    from .lab.assign import build

    students = build(args.folder)
    print(f"wrote the lab of {len(students)} notebooks to {Path(args.folder).resolve()}: hand out */student/, "
          f"grade with */autograder/*.zip (docs/instructors.md)")
    return 0


class Parser(argparse.ArgumentParser):
    """argparse with errors as one line ``error: ...`` (exit code 2). A command that runs experiments
    lists the registry's in its help (loaded only then: the registry imports torch)."""

    experiments_of: str | None = None

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")

    def format_help(self) -> str:
        if self.experiments_of:
            from . import registry

            lines = [f"  {n:15s} {registry.get(n).summary}" for n in registry.names(self.experiments_of)]
            self.epilog = "\n".join([f"experiments (all = {', '.join(registry.names(self.experiments_of, True))}):",
                                     *lines])
            self.formatter_class = argparse.RawDescriptionHelpFormatter
        return super().format_help()


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fmlbd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    def with_config(p):
        p.add_argument("--profile", default="quick", choices=sorted(PROFILES))
        p.add_argument("--seed", default=None, help="random seed (an integer >= 0)")
        p.add_argument("--data-root", default=None, help="folder holding omniglot/ or mini-imagenet/")
        p.add_argument("--results-dir", default=None)
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. --set meta.inner_lr=0.1 (repeatable)")
        p.add_argument("--device", default=None, help="torch device: cpu (default), cuda, cuda:N or mps")
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")
        return p

    with_config(sub.add_parser("config", help="print the resolved config as JSON")).set_defaults(func=cmd_config)
    p = with_config(sub.add_parser("train", help="benign federated meta-training + main-task accuracy"))
    p.add_argument("--shots", type=positive_int, nargs="+", default=[1, 5])
    p.add_argument("--ways", type=positive_int, nargs="+", default=None,
                   help="N of the N-way meta-test episodes (default: eval.ways), e.g. --ways 5 20")
    p.set_defaults(func=cmd_train)
    for command, text in (("attack", "backdoor attack experiments"), ("defend", "local defense experiments")):
        p = with_config(sub.add_parser(command, help=f"{text} (tables + figures)"))
        p.experiments_of = command
        p.add_argument("--experiment", nargs="+", default=["all"], metavar="NAME",
                       help="experiments of the registry to run (listed below; default: all)")
        p.add_argument("--cases", nargs="+", default=None, choices=CASES,
                       help="cases to run (default: each experiment's own)")
        p.set_defaults(func=cmd_experiments)
    p = with_config(sub.add_parser("reproduce", help="run every notebook headless (papermill) + summary"))
    p.add_argument("--output", default=None, help="output folder (default outputs/<profile>)")
    p.add_argument("--only", nargs="+", default=None, help="run only notebooks whose name contains one of these")
    p.add_argument("--retrain", action="store_true", help="train every model from scratch (no shipped models)")
    p.add_argument("--no-site", action="store_true", help="do not build the rendered site of the run")
    p.set_defaults(func=cmd_reproduce)
    p = sub.add_parser("site", help="build the rendered site of a finished run (needs the site extra)")
    p.add_argument("output", nargs="?", default="outputs/quick", help="the run's output folder (default outputs/quick)")
    p.set_defaults(func=cmd_site)
    p = sub.add_parser("notebooks", help="write the notebook series and its solutions to a folder")
    p.add_argument("folder", help="where to write them (created if missing)")
    p.add_argument("--overwrite", action="store_true", help="replace notebooks already in the folder")
    p.set_defaults(func=cmd_notebooks)
    p = sub.add_parser("lab", help="write the course lab: student notebooks, solutions, autograders (lab extra)")
    p.add_argument("folder", help="a new or empty folder")
    p.set_defaults(func=cmd_lab)
    p = sub.add_parser("download", help="download and MD5-verify a dataset")
    p.add_argument("dataset", choices=["omniglot"])
    p.add_argument("--source", default="minimal", choices=sorted(OMNIGLOT_SOURCES))
    p.add_argument("--root", default="data")
    p.set_defaults(func=cmd_download)
    return parser


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds: worker processes are terminated, caches stay whole


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help (0) or a usage error, already printed as one line (2)
        return done.code
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return args.func(args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
