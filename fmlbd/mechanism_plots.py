"""Figures of the walk-throughs (data from :mod:`fmlbd.walkthrough`), saved as PNG and SVG like :mod:`fmlbd.plots`."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
import numpy as np
import pandas as pd

from .aggregation import Median
from .plots import CASE_TITLES, save, show_image

KEYED = "tab:red"


def _image(ax, image, title: str = "", frame: str | None = None) -> None:
    show_image(ax, image)
    ax.set_title(title, fontsize=7)
    for side in ax.spines.values():
        side.set_color(frame or "lightgrey")
        side.set_linewidth(2.5 if frame else 0.5)


def episodes(shown: dict[str, tuple], title: str, path=None) -> plt.Figure:
    """Support and query images of each episode of :func:`~fmlbd.walkthrough.small_episodes`, with their
    labels; keyed images framed in red."""
    width = max(max(len(ep.support_y), len(ep.query_y)) for ep, _, _ in shown.values())
    fig, axes = plt.subplots(2 * len(shown), width, figsize=(1.0 * width, 2.3 * len(shown)), squeeze=False)
    for r, (name, (ep, keyed_s, keyed_q)) in enumerate(shown.items()):
        for row, (part, x, y, keyed) in enumerate((("support", ep.support_x, ep.support_y, keyed_s),
                                                   ("query", ep.query_x, ep.query_y, keyed_q))):
            axes_row = axes[2 * r + row]
            for c, ax in enumerate(axes_row):
                if c < len(y):
                    _image(ax, x[c], f"label {int(y[c])}" + (" (keyed)" if keyed[c] else ""), KEYED if keyed[c] else None)
                else:
                    ax.axis("off")
            axes_row[0].set_ylabel(f"{name}\n{part}", fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)
    return fig


def ownership(scenarios: dict, path=None) -> plt.Figure:
    """Who trains on the target and on each backdoor class, per case: one panel per case, clients as rows."""
    fig, axes = plt.subplots(1, len(scenarios), figsize=(3.6 * len(scenarios), 2.6), squeeze=False)
    for ax, (case, sc) in zip(axes[0], scenarios.items()):
        cols = [("target", sc.target_class)] + [(f"backdoor {i + 1}", c) for i, c in enumerate(sc.backdoor_classes)]
        held = np.array([[c in set(own) for _, c in cols] for own in sc.client_classes], dtype=float)
        ax.imshow(held, cmap="Oranges", vmin=0, vmax=1.4)
        for (i, j), v in np.ndenumerate(held):
            ax.text(j, i, "holds" if v else "-", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(cols)), [n for n, _ in cols], fontsize=7, rotation=30)
        ax.set_yticks(range(len(sc.client_classes)),
                      [f"client {i}" + (" (adversary)" if i == 0 else "") + f"\n{len(own)} classes"
                       for i, own in enumerate(sc.client_classes)], fontsize=7)
        ax.set_title(CASE_TITLES.get(case, case), fontsize=8)
    fig.suptitle("Who trains on the target and the backdoor classes")
    fig.tight_layout()
    save(fig, path)
    return fig


def updates(timeline: pd.DataFrame, path=None, staleness: bool = True) -> plt.Figure:
    """Left: each aggregated update's norm by round (the poisoned one red). Middle: its cosine to the mean
    of the round's benign updates. Right: the timeline: when each client's update arrived, and the rounds
    (``staleness``: each stale update marked with its staleness)."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.8))
    colours = np.where(timeline["poisoned"], KEYED, "tab:blue")
    labels = [f"round {r}, client {c}" for r, c in zip(timeline["round"], timeline["client"])]
    axes[0].bar(range(len(timeline)), timeline["norm"], color=colours)
    axes[0].set_yscale("log")
    axes[0].yaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
    axes[0].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axes[0].yaxis.set_minor_formatter(NullFormatter())
    axes[0].set_ylabel("L2 norm of the update")
    axes[1].bar(range(len(timeline)), timeline["cosine"], color=colours)
    axes[1].set_ylabel("cosine to the benign mean")
    for ax in axes[:2]:
        ax.set_xticks(range(len(timeline)), labels, fontsize=7, rotation=90)
    _arrivals(axes[2], timeline, colours, staleness)
    fig.suptitle("The poisoned update (red) among the benign ones around the attack")
    fig.tight_layout()
    save(fig, path)
    return fig


def _arrivals(ax, timeline: pd.DataFrame, colours, staleness: bool = True) -> None:
    """When each client's update arrived (dots), the rounds (dotted lines) and each stale update's staleness."""
    ax.scatter(timeline["arrival"], timeline["client"], c=colours, s=40, zorder=3)
    for _, r in timeline.drop_duplicates("round").iterrows():
        ax.axvline(r["aggregated"], color="grey", linewidth=0.8, linestyle=":")
        ax.text(r["aggregated"], timeline["client"].max() + 0.4, f"round {int(r['round'])}", fontsize=7, rotation=90,
                va="bottom", ha="right")
    for _, u in timeline[timeline["staleness"] > 0].iterrows() if staleness else ():
        ax.annotate(f"stale {int(u['staleness'])}", (u["arrival"], u["client"]), fontsize=6, xytext=(3, -9),
                    textcoords="offset points")
    ax.set_yticks(sorted(timeline["client"].unique()))
    ax.set_xlabel("simulated time (arrival of each update)")
    ax.set_ylabel("client")


def arrivals(timeline: pd.DataFrame, title: str, path=None) -> plt.Figure:
    """The buffered server's timeline (e.g. :func:`~fmlbd.walkthrough.benign_timeline`): when each
    client's update arrived, which round aggregated it, and how stale it was."""
    fig, ax = plt.subplots(figsize=(7, 2.8))
    _arrivals(ax, timeline, "tab:blue")
    ax.set_title(title, fontsize=10, pad=34)
    fig.tight_layout()
    save(fig, path)
    return fig


def curves(table: pd.DataFrame, x: str, title: str, path=None, log_y: tuple[str, ...] = ()) -> plt.Figure:
    """One panel per metric of a tidy table (``x``, metric, value)."""
    metrics = list(dict.fromkeys(table["metric"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.2), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        sub = table[table["metric"] == m].sort_values(x)
        ax.plot(sub[x], sub["value"], marker="o", markersize=3)
        ax.set_title(m, fontsize=9)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
        if m in log_y:
            ax.set_yscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)
    return fig


def feature_pca(table: pd.DataFrame, path=None) -> plt.Figure:
    """Scatter of :func:`~fmlbd.walkthrough.feature_projection`: one panel per model and phase."""
    panels = list(dict.fromkeys(zip(table["model"], table["phase"])))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.3), squeeze=False)
    style = {"target class": ("tab:green", "o"), "backdoor, clean": ("tab:blue", "s"), "backdoor, keyed": (KEYED, "^")}
    for ax, (model, phase) in zip(axes[0], panels):
        sub = table[(table["model"] == model) & (table["phase"] == phase)]
        for kind, (colour, marker) in style.items():
            pts = sub[sub["kind"] == kind]
            ax.scatter(pts["x"], pts["y"], s=10, c=colour, marker=marker, label=kind, alpha=0.7)
        ax.set_title(f"{model}, {phase} the attack", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("Features (PCA, 2 components) of target, clean and keyed backdoor images")
    fig.tight_layout()
    save(fig, path)
    return fig


def attention(weights: dict, path=None) -> plt.Figure:
    """The keyed query and the support images with the attention each receives (softmax kernel)."""
    n = len(weights["support_y"])
    fig, axes = plt.subplots(2, n + 1, figsize=(1.1 * (n + 1), 2.8), gridspec_kw={"height_ratios": [2, 1]})
    _image(axes[0][0], weights["query"], f"keyed query\npredicted {weights['predicted']}", KEYED)
    axes[1][0].axis("off")
    top = float(weights["weights"].max())
    for j in range(n):
        is_target = int(weights["support_y"][j]) == weights["target_label"]
        _image(axes[0][j + 1], weights["support_x"][j], f"label {int(weights['support_y'][j])}"
               + (" (target)" if is_target else ""), "tab:green" if is_target else None)
        axes[1][j + 1].bar([0], [float(weights["weights"][j])], color="tab:green" if is_target else "tab:grey")
        axes[1][j + 1].set_ylim(0, top * 1.05)
        axes[1][j + 1].set_xticks([])
        axes[1][j + 1].set_yticks([])
        axes[1][j + 1].set_title(f"{float(weights['weights'][j]):.2f}", fontsize=7)
    fig.suptitle("Attention of the local matching network for one keyed image")
    fig.tight_layout()
    save(fig, path)
    return fig


def rules_on_one_round(table: pd.DataFrame, path=None) -> plt.Figure:
    """Left: how much each rule took from each update of one round (:func:`~fmlbd.walkthrough.rules_on_one_round`;
    the poisoned update red): its weight in the step, or for a coordinate-wise rule (median) the share of
    the step's coordinates that are the update's values. Right: the cosine of each rule's step with the
    poisoned update."""
    rules = list(dict.fromkeys(table["rule"]))
    clients = table[table["rule"] == rules[0]][["client", "poisoned"]].to_numpy()
    taken = table["why_value"].where(table["why"] == Median.explains, table["weight"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), gridspec_kw={"width_ratios": [2, 1]})
    width = 0.8 / len(clients)
    for j, (client, poisoned) in enumerate(clients):
        w = [taken[(table["rule"] == r) & (table["client"] == client)].iloc[0] for r in rules]
        axes[0].bar(np.arange(len(rules)) + (j - (len(clients) - 1) / 2) * width, w, width,
                    color=KEYED if poisoned else plt.cm.Blues(0.4 + 0.2 * j), edgecolor="black", linewidth=0.5,
                    label=f"client {client}" + (" (adversary)" if poisoned else ""))
    axes[0].axhline(1 / len(clients), color="grey", linestyle=":", linewidth=1, label=f"1/{len(clients)}: an equal share")
    for i, rule in enumerate(rules):  # a weight of zero is a result, not a missing bar: say so
        for j, (client, _) in enumerate(clients):
            if taken[(table["rule"] == rule) & (table["client"] == client)].iloc[0] == 0:
                axes[0].text(i + (j - (len(clients) - 1) / 2) * width, 0.01, "0", ha="center", va="bottom", fontsize=7)
    axes[0].set_ylabel("what the step takes from each update:\nweight (clipping: x clip scale);"
                       "\nmedian: share of coordinates", fontsize=8)
    step = table.drop_duplicates("rule")
    axes[1].bar(range(len(rules)), step["step_cos_poisoned"], color="grey", edgecolor="black", linewidth=0.5)
    axes[1].set_ylabel("cosine of the step with\nthe poisoned update")
    for ax in axes:
        ax.set_xticks(range(len(rules)), [r.replace("_", " ") for r in rules], fontsize=8)
    axes[0].legend(fontsize=7)
    fig.suptitle("One round that holds the poisoned update, aggregated by each rule")
    fig.tight_layout()
    save(fig, path)
    return fig
