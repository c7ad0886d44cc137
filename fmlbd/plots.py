"""Figures drawn from the tidy result tables (never from live training), saved as PNG and SVG."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter
import torch
import pandas as pd

from .labels import NO_ATTACK

LABELS = {
    "main_task_acc": "Main task acc",
    "meta_test_acc": "Meta-testing acc",
    "backdoor_train_acc": "Backdoor acc (attack training)",
    "backdoor_val_acc": "Backdoor acc (attack validation)",
}
STYLE = {
    "main_task_acc": dict(color="tab:blue", marker="o"),
    "meta_test_acc": dict(color="tab:green", marker="s"),
    "backdoor_train_acc": dict(color="tab:red", marker="^"),
    "backdoor_val_acc": dict(color="tab:orange", marker="v"),
}
CASE_TITLES = {
    "a": "case (a): benign clients have backdoor classes",
    "b": "case (b): benign clients lack backdoor classes",
    "c": "case (c): backdoor classes in fine-tuning support",
}


def save(fig: plt.Figure, path: str | Path | None) -> list[Path]:
    """Save ``fig`` as ``<path>.png`` and ``<path>.svg`` (path without suffix); returns the files."""
    if path is None:
        return []
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    files = [path.with_suffix(".png"), path.with_suffix(".svg")]
    fig.savefig(files[0], dpi=120, bbox_inches="tight")
    fig.savefig(files[1], bbox_inches="tight")
    return files


def episodes_note(episodes: int, mark: str = "point") -> str:
    """What each point (or bar) of a figure of one draw is."""
    return f"each {mark}: mean over {episodes} evaluation episodes, for one draw of the adversary"


def _finish(fig: plt.Figure, ax, title: str, note: str) -> None:
    """Title, then (small, below it) ``note``: what each point or bar is; one legend for the figure, from
    ``ax``, below the panels where it covers no data."""
    height = fig.get_figheight()
    fig.suptitle(title, fontsize=11, y=1 - 0.05 / height, va="top")
    if note:
        fig.text(0.5, 1 - 0.33 / height, note, ha="center", va="top", fontsize=8, color="dimgrey")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.3 / height, 1, 1 - (0.5 if note else 0.3) / height))


def _no_attack_line(ax, levels: dict[str, float] | None, case: str) -> None:
    if levels and case in levels:
        ax.axhline(levels[case], color="black", linestyle="--", linewidth=1, label="backdoor, no attack")


def curves_by_case(table: pd.DataFrame, x: str, xlabel: str, title: str, path=None, chance: float | None = None,
                   metrics: Sequence[str] | None = None, note: str = "",
                   log_x: bool = False, no_attack: dict[str, float] | None = None) -> plt.Figure:
    """One panel per case, one line per metric: ``value`` against ``x`` from a tidy table. ``note``: what
    each point is (shown under the title); ``log_x``: a symmetric-log x axis, linear up to 10, so the
    first steps of a long run stay visible; ``no_attack[case]``: the backdoor accuracy (attack
    training set) of the same model family before any attack, drawn as a reference line."""
    cases = sorted(table["case"].unique())
    metrics = metrics or [m for m in LABELS if m in set(table["metric"])]
    fig, axes = plt.subplots(1, len(cases), figsize=(4.6 * len(cases), 3.9), sharey=True, squeeze=False)
    for ax, case in zip(axes[0], cases):
        sub = table[table["case"] == case]
        for m in metrics:
            line = sub[sub["metric"] == m].sort_values(x)
            ax.plot(line[x], line["value"], label=LABELS[m], markersize=3 if log_x else 4,
                    **STYLE[m])
        if chance is not None:
            ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label=f"chance (1/N = {chance:.2f})")
        _no_attack_line(ax, no_attack, case)
        if log_x:
            ax.set_xscale("symlog", linthresh=10)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.set_xlim(-0.5, table[x].max() * 1.1)
        ax.set_title(CASE_TITLES.get(case, f"case ({case})"), fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (fraction)")
    _finish(fig, axes[0][0], title, note)
    save(fig, path)
    return fig


def before_after_bars(table: pd.DataFrame, title: str, path=None, phase_col: str = "phase", note: str = "") -> plt.Figure:
    """Grouped bars of each metric per phase (e.g. before / after the attack), one panel per case;
    ``note``: what each bar is (shown under the title)."""
    cases = sorted(table["case"].unique())
    phases = list(dict.fromkeys(table[phase_col]))
    metrics = [m for m in LABELS if m in set(table["metric"])]
    fig, axes = plt.subplots(1, len(cases), figsize=(4.6 * len(cases), 3.6), sharey=True, squeeze=False)
    width = 0.8 / len(phases)
    for ax, case in zip(axes[0], cases):
        sub = table[table["case"] == case]
        for j, phase in enumerate(phases):
            vals = [sub[(sub["metric"] == m) & (sub[phase_col] == phase)]["value"].mean() for m in metrics]
            bars = ax.bar([i + j * width for i in range(len(metrics))], vals, width, label=str(phase),
                          color=plt.cm.Greys(0.35 + 0.5 * j / max(1, len(phases) - 1)), edgecolor="black")
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.set_xticks([i + width * (len(phases) - 1) / 2 for i in range(len(metrics))])
        ax.set_xticklabels([LABELS[m].replace(" (", "\n(") for m in metrics], fontsize=7)
        ax.set_title(CASE_TITLES.get(case, f"case ({case})"), fontsize=9)
        ax.set_ylim(0, 1.1)
    axes[0][0].set_ylabel("accuracy (fraction)")
    _finish(fig, axes[0][0], title, note)
    save(fig, path)
    return fig


def draws_scatter(table: pd.DataFrame, title: str, path=None, main_floor: dict[str, float] | None = None,
                  group: str = "method", note: str = "", no_attack: dict[str, float] | None = None) -> plt.Figure:
    """One point per draw of the attack (tidy rows: case, draw, ``group``, metric, value): main-task
    accuracy (x) against backdoor accuracy on the attack training set (y), one panel per case,
    one colour per ``group``. Optional guides: ``main_floor[case]`` (vertical), ``no_attack[case]``
    (horizontal: backdoor accuracy before any attack)."""
    cases = sorted(table["case"].unique())
    wide = table.pivot_table(index=["case", group, "draw"], columns="metric", values="value").reset_index()
    fig, axes = plt.subplots(1, len(cases), figsize=(4.2 * len(cases), 3.8), sharey=True, squeeze=False)
    for ax, case in zip(axes[0], cases):
        sub = wide[wide["case"] == case]
        for i, (name, pts) in enumerate(sub.groupby(group, sort=False)):
            ax.scatter(pts["main_task_acc"], pts["backdoor_train_acc"], label=str(name), s=28,
                       color=plt.cm.tab10(i), edgecolor="black", linewidth=0.5)
        if main_floor and case in main_floor:
            ax.axvline(main_floor[case], color="tab:blue", linestyle="--", linewidth=1,
                       label="main task floor")
        _no_attack_line(ax, no_attack, case)
        ax.set_title(CASE_TITLES.get(case, f"case ({case})"), fontsize=9)
        ax.set_xlabel(LABELS["main_task_acc"])
        xs = list(wide["main_task_acc"]) + list((main_floor or {}).values())
        ax.set_xlim(max(0.0, min(xs) - 0.03), min(1.02, max(xs) + 0.03))
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(LABELS["backdoor_train_acc"])
    _finish(fig, axes[0][0], title, note)
    save(fig, path)
    return fig


def rule_attack_bars(table: pd.DataFrame, title: str, path=None, metric: str = "backdoor_train_acc",
                     note: str = "") -> plt.Figure:
    """Server-side rules x adversaries (tidy rows: case, rule, attack, draw, phase, metric, value; attack
    "none" = no attack): one panel per case and phase after the attack, one bar per rule and adversary
    (mean over draws, whiskers from the lowest to the highest draw), the rule's no-attack level as a
    black line across its bars."""
    sub = table[table["metric"] == metric]
    cases, rules = list(dict.fromkeys(sub["case"])), list(dict.fromkeys(sub["rule"]))
    attacks = [a for a in dict.fromkeys(sub["attack"]) if a != "none"]
    phases = [p for p in dict.fromkeys(sub["phase"]) if p != NO_ATTACK]
    stats = sub.groupby(["case", "rule", "attack", "phase"])["value"].agg(["mean", "min", "max"])
    fig, axes = plt.subplots(len(cases), len(phases), figsize=(5.2 * len(phases), 3.2 * len(cases)), sharey=True,
                             squeeze=False)
    width = 0.8 / len(attacks)
    for row, case in enumerate(cases):
        for col, phase in enumerate(phases):
            ax = axes[row][col]
            for j, name in enumerate(attacks):
                st = [stats.loc[(case, r, name, phase)] if (case, r, name, phase) in stats.index else None
                      for r in rules]
                xs = [i + (j - (len(attacks) - 1) / 2) * width for i in range(len(rules))]
                mean = [s["mean"] if s is not None else float("nan") for s in st]
                err = [[s["mean"] - s["min"] if s is not None else 0 for s in st],
                       [s["max"] - s["mean"] if s is not None else 0 for s in st]]
                ax.bar(xs, mean, width, yerr=err, capsize=2, label=name, color=plt.cm.tab10(j), edgecolor="black",
                       linewidth=0.5)
            for i, r in enumerate(rules):
                if (case, r, "none", NO_ATTACK) in stats.index:
                    level = stats.loc[(case, r, "none", NO_ATTACK)]["mean"]
                    ax.hlines(level, i - 0.45, i + 0.45, color="black", linewidth=1.5,
                              label=NO_ATTACK if i == 0 else None)
            ax.set_xticks(range(len(rules)))
            ax.set_xticklabels([r.replace("_", " ") for r in rules], fontsize=8)
            ax.set_ylim(0, 1.05)
            ax.set_title(f"{CASE_TITLES.get(case, case)}\n{phase}", fontsize=8)
            ax.grid(alpha=0.3, axis="y")
        axes[row][0].set_ylabel(LABELS[metric].replace(" (", "\n("), fontsize=8)
    _finish(fig, axes[0][0], title, note)
    save(fig, path)
    return fig


def show_image(ax, image: torch.Tensor) -> None:
    """Draw one image (float ``[ch, H, W]`` in [0, 1]; grey-scale with ink dark) without ticks."""
    img = image.permute(1, 2, 0).squeeze(-1).numpy()
    ax.imshow(img, cmap="gray_r" if img.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def image_rows(rows: dict[str, torch.Tensor], title: str, path=None, max_per_row: int = 10) -> plt.Figure:
    """A grid of images, one labelled row per entry: ``{row label: float [n, ch, H, W] in [0, 1]}``."""
    ncols = min(max_per_row, max(len(v) for v in rows.values()))
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.1 * ncols, 1.25 * len(rows)), squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        for c in range(ncols):
            ax = axes[r][c]
            if c < len(images):
                show_image(ax, images[c])
            else:
                ax.axis("off")
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)
    return fig


def cases_diagram(path=None) -> plt.Figure:
    """The three evaluation cases of PROTOCOL.md as a table-like picture."""
    rows = [("benign clients train on\nbackdoor classes?", ("yes", "no", "yes")),
            ("backdoor classes in the\nfine-tuning support set?", ("no", "no", "yes"))]
    fig, ax = plt.subplots(figsize=(7.5, 2.4))
    ax.axis("off")
    for j, case in enumerate("abc"):
        ax.text(0.42 + 0.2 * j, 0.9, f"case ({case})", ha="center", fontsize=11, weight="bold")
        for i, (_, answers) in enumerate(rows):
            yes = answers[j] == "yes"
            ax.add_patch(plt.Rectangle((0.33 + 0.2 * j, 0.52 - 0.38 * i), 0.18, 0.26,
                                       color="tab:orange" if yes else "tab:blue", alpha=0.35))
            ax.text(0.42 + 0.2 * j, 0.65 - 0.38 * i, answers[j], ha="center", va="center", fontsize=11)
    for i, (question, _) in enumerate(rows):
        ax.text(0.0, 0.65 - 0.38 * i, question, va="center", fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title("Three evaluation cases (federated meta-training / meta-testing)")
    save(fig, path)
    return fig
