"""Interpretations rendered from result tables, so that the prose a notebook shows always states the
numbers of the run above it (never numbers typed by hand). Each function returns Markdown."""
from __future__ import annotations

import pandas as pd

from .labels import NO_ATTACK, RIGHT_AFTER
from .results import first_below

CASE_ORDER = ("a", "b", "c")


def by_case(values: dict, digits: int | None = 2) -> str:
    """``{"a": 0.94, "b": 0.86}`` -> "0.94 (a) and 0.86 (b)" (``digits=None``: values as they are)."""
    parts = [f"{values[c] if digits is None else format(values[c], f'.{digits}f')} ({c})"
             for c in CASE_ORDER if c in values]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def from_to(before: dict[str, float], after: dict[str, float], digits: int = 2) -> str:
    """"0.86 → 0.84 (a) and 0.85 → 0.84 (b)"."""
    return by_case({c: f"{before[c]:.{digits}f} → {after[c]:.{digits}f}" for c in before}, None)


def _pick(v: pd.Series, cases, *index) -> dict[str, float]:
    return {c: float(v[(c, *index)]) for c in cases}


def one_shot(table: pd.DataFrame) -> str:
    """Interpretation of a one-shot attack table (case, phase, metric, value)."""
    v = table.set_index(["case", "phase", "metric"])["value"]
    cases = [c for c in CASE_ORDER if c in set(table["case"])]
    after = _pick(v, cases, "after", "backdoor_train_acc")
    return (f"**What this run measured.** Right after the attack, backdoor accuracy on the attack training set is "
            f"{by_case(after)}, and {by_case(_pick(v, cases, 'after', 'backdoor_val_acc'))} on the validation set. "
            f"Right before it, keyed images already fell on the target in {by_case(_pick(v, cases, 'before', 'backdoor_train_acc'))} "
            f"of cases. The main task, before → after, is {from_to(_pick(v, cases, 'before', 'main_task_acc'), _pick(v, cases, 'after', 'main_task_acc'), 3)} "
            f"(the same episodes before and after). The paper found the attack "
            f"weakest in case (c). This run has one draw of the adversary and does not rank the cases: a difference "
            f"between cases here may be a difference between draws (notebook 05 shows how much one draw varies).")


def dampening(table: pd.DataFrame, threshold: float = 0.5) -> str:
    """Interpretation of a dampening table (case, round, metric, value)."""
    bd = table[table["metric"] == "backdoor_train_acc"].pivot(index="round", columns="case", values="value")
    val = table[table["metric"] == "backdoor_val_acc"].pivot(index="round", columns="case", values="value")
    cases = [c for c in CASE_ORDER if c in bd.columns]
    below = first_below(table, "round", "backdoor_train_acc", threshold)
    never = [c for c in cases if below[c] != below[c]]
    first = {c: below[c] for c in cases if c not in never}
    last = int(bd.index.max())
    text = (f"**What this run measured ({last} benign rounds).** Backdoor accuracy on the attack training set is "
            f"at least {by_case(bd[cases].min().to_dict())} at every evaluated round, and {by_case(bd.loc[last].to_dict())} "
            f"at round {last}. ")
    if never:
        text += f"It never falls below {threshold} within the run in case{'s' if len(never) > 1 else ''} " \
                f"{' and '.join(f'({c})' for c in never)}. "
    if first:
        text += f"It first falls below {threshold} at round " + ", ".join(f"{int(r)} ({c})" for c, r in first.items()) + ". "
    if "c" in cases and len(cases) > 1:
        lowest_c = (bd["c"] <= bd[[c for c in cases if c != "c"]].min(axis=1)).mean()
        text += f"Case (c) is the lowest of the cases at {lowest_c:.0%} of the evaluated rounds. "
    higher = {c: float((bd[c] >= val[c]).mean()) for c in cases}
    text += ("Accuracy on the attack training set is at least that on the validation set at "
             + ", ".join(f"{higher[c]:.0%} ({c})" for c in cases) + " of the rounds.")
    return text


def finetune(table: pd.DataFrame, steps: int) -> str:
    """Interpretation of a fine-tuning table (case, step, metric, value) after ``steps`` steps."""
    end = table[table["step"] == steps].set_index(["case", "metric"])["value"]
    cases = [c for c in CASE_ORDER if c in set(table["case"])]
    return (f"**What this run measured.** After {steps} fine-tuning steps, backdoor accuracy is "
            f"{by_case(_pick(end, cases, 'backdoor_train_acc'))} on the attack training set and "
            f"{by_case(_pick(end, cases, 'backdoor_val_acc'))} on the validation set; the main task is "
            f"{by_case(_pick(end, cases, 'main_task_acc'))}.")


def _methods_table(comparison: pd.DataFrame, cases) -> str:
    d = comparison.set_index(["case", "method", "phase", "metric"])["value"]
    head = ["method"] + [f"case ({c}) backdoor" for c in cases] + ["main task " + " / ".join(f"({c})" for c in cases)]
    rows = []
    for method in dict.fromkeys(comparison["method"]):
        cells = [f"{d[c, method, 'before', 'backdoor_train_acc']:.2f} → {d[c, method, 'after', 'backdoor_train_acc']:.2f} "
                 f"({d[c, method, 'after', 'backdoor_val_acc']:.2f})" for c in cases]
        main = " / ".join(f"{d[c, method, 'before', 'main_task_acc']:.3f}" for c in cases) + " → " + \
            " / ".join(f"{d[c, method, 'after', 'main_task_acc']:.3f}" for c in cases)
        rows.append([method, *cells, main])
    return _table(head, rows)


def defense(comparison: pd.DataFrame, spread: pd.DataFrame, above: pd.DataFrame, rounds: pd.DataFrame,
            cost: pd.DataFrame) -> str:
    """Interpretation of the defense experiments: the comparison (case, phase, method, metric, value),
    the spread over draws (:func:`fmlbd.experiments.defense.draws_spread`), the draws against the
    no-attack level (:func:`fmlbd.experiments.defense.against_no_attack`), the rounds after the
    attack and the inference cost."""
    from .metrics import BACKDOOR_MARGIN
    cases = [c for c in ("a", "b") if c in set(comparison["case"])]
    d = comparison.set_index(["case", "method", "phase", "metric"])["value"]
    shared = "matching, shared features"
    keyed = {c: spread.loc[(c, "keyed images", "backdoor_train_acc")] for c in cases}
    control = {c: spread.loc[(c, "no keyed images (control)", "backdoor_train_acc")] for c in cases}
    last = rounds[rounds["round"] == rounds["round"].max()].set_index(["case", "metric"])["value"]
    seconds = cost.set_index("method")["seconds_per_episode"]
    lines = [
        "**What this run measured.** Backdoor accuracy on the attack training set right before → right after "
        "the attack (validation in brackets), and main-task accuracy before → after:", "",
        _methods_table(comparison, cases), "",
        f"- Right after the attack, backdoor accuracy is {by_case(_pick(d, cases, shared, 'after', 'backdoor_train_acc'))} "
        f"when the federation shares features only, against "
        f"{by_case(_pick(d, cases, 'fine-tuning', 'after', 'backdoor_train_acc'))} when fine-tuning the head-trained model.",
        "- Over the adversary's draws, the defended backdoor accuracy right after the attack spans "
        + ", ".join(f"{keyed[c]['min']:.2f}-{keyed[c]['max']:.2f} (mean {keyed[c]['mean']:.2f}) in ({c})" for c in cases)
        + "; the update without keyed images gives "
        + ", ".join(f"{control[c]['min']:.2f}-{control[c]['max']:.2f} (mean {control[c]['mean']:.2f})" for c in cases)
        + ".",
        "- Against the defended model's own no-attack level (before the attack: "
        f"{by_case(above['level'].to_dict())}), the draws' mean is "
        + by_case({c: f"{above.loc[c, 'mean_excess']:+.2f}" for c in cases}, None)
        + f" above it; draws more than {BACKDOOR_MARGIN:.2f} above it: "
        + by_case({c: f"{above.loc[c, 'draws_above']} of {above.loc[c, 'draws']}" for c in cases}, None)
        + " (highest " + by_case({c: f"{above.loc[c, 'max_excess']:+.2f}" for c in cases}, None) + ").",
        "- Keyed update minus its control, paired by draw (mean and 95% interval over the draws): "
        + by_case({c: _interval(above.loc[c, "keyed_minus_control"], above.loc[c, "keyed_minus_control_ci95"])
                   for c in cases}, None) + ".",
        f"- Before the attack the defended model's main task is {by_case(_pick(d, cases, shared, 'before', 'main_task_acc'), 3)}, "
        f"the undefended one's {by_case(_pick(d, cases, 'fine-tuning', 'before', 'main_task_acc'), 3)}.",
        f"- After {int(rounds['round'].max())} benign rounds, defended backdoor accuracy is "
        f"{by_case({c: last[c, 'backdoor_train_acc'] for c in sorted(set(rounds['case']))})}.",
        f"- A query episode takes {seconds['matching network'] * 1000:.0f} ms with the matching network and "
        f"{seconds['fine-tuning'] * 1000:.0f} ms with fine-tuning on this machine.",
        "- **In short:** right after the attack, sharing features only lowers backdoor accuracy from "
        f"{by_case(_pick(d, cases, 'fine-tuning', 'after', 'backdoor_train_acc'))} (fine-tuning) to a mean over draws of "
        f"{by_case({c: keyed[c]['mean'] for c in cases})}; "
        + (f"it does not remove it in every draw: {int(above['draws_above'].sum())} of {int(above['draws'].sum())} "
           f"draws leave it more than {BACKDOOR_MARGIN:.2f} above the no-attack level."
           if above["draws_above"].sum() else
           f"no draw leaves it more than {BACKDOOR_MARGIN:.2f} above the no-attack level."),
    ]
    return "\n".join(lines)


def _interval(mean: float, half: float) -> str:
    """"+0.16 (-0.06 to +0.37), within noise" or "... , above zero" (a 95% interval around ``mean``)."""
    low, high = mean - half, mean + half
    verdict = "above zero" if low > 0 else "below zero" if high < 0 else "within noise of zero"
    return f"{mean:+.2f} ({low:+.2f} to {high:+.2f}, {verdict})"


def chance_control(control: pd.DataFrame) -> str:
    """Interpretation of a chance-control table (case, images, metric, value)."""
    v = control.set_index(["case", "images", "metric"])["value"]
    cases = [c for c in CASE_ORDER if c in set(control["case"])]
    return ("**This run:** clean copies of the attack images land on the target in "
            f"{by_case(_pick(v, cases, 'clean', 'backdoor_train_acc'))} of cases, keyed ones in "
            f"{by_case(_pick(v, cases, 'keyed', 'backdoor_train_acc'))}.")


def adaptive(adaptive_table: pd.DataFrame, comparison: pd.DataFrame) -> str:
    """Interpretation of the adaptive attack (case, phase, metric, value) against the defense."""
    v = adaptive_table.set_index(["case", "metric"])["value"]
    d = comparison.set_index(["case", "method", "phase", "metric"])["value"]
    cases = [c for c in ("a", "b") if c in set(adaptive_table["case"])]
    return (f"**This run:** the adaptive attack brings the defended federation's backdoor accuracy to "
            f"{by_case(_pick(v, cases, 'backdoor_train_acc'))} (validation "
            f"{by_case(_pick(v, cases, 'backdoor_val_acc'))}), against "
            f"{by_case(_pick(d, cases, 'fine-tuning', 'after', 'backdoor_train_acc'))} for the protocol's attack on the "
            f"undefended model; main task {by_case(_pick(v, cases, 'main_task_acc'), 3)}.")


def poisoned_update(timeline) -> str:
    """Interpretation of :func:`fmlbd.walkthrough.attack_timeline`: how the poisoned update stands out."""
    hit = timeline[timeline["poisoned"]].iloc[0]
    benign = timeline[~timeline["poisoned"]]
    return (f"**This run:** the poisoned update is {hit['norm'] / benign['norm'].median():.1f} times as large as the "
            f"median of the {len(benign)} benign updates around it (L2 norm), and its cosine to the benign mean of its round is {hit['cosine']:.2f} "
            f"(benign updates: {benign['cosine'].min():.2f} to {benign['cosine'].max():.2f}).")


def _table(head: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    return "\n".join(["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
                     + ["| " + " | ".join(r) + " |" for r in rows])


def _name(rule: str) -> str:
    return rule.replace("_", " ")


def one_round(table: pd.DataFrame) -> str:
    """Interpretation of :func:`fmlbd.walkthrough.rules_on_one_round`: what each rule did with the poisoned update."""
    bad = table[table["poisoned"]].set_index("rule")
    benign_norm = table[~table["poisoned"]]["norm"].median()
    rows = [[_name(rule), "none (per coordinate)" if rule == "median" else f"{r['weight']:.2f}",
             f"{r['why']}: {r['why_value']:.3g}", f"{r['step_cos_poisoned']:.2f}"] for rule, r in bad.iterrows()]
    return (f"**This run:** the poisoned update is {bad['norm'].iloc[0] / benign_norm:.1f} times the median norm of "
            f"the benign updates of its own round (a narrower baseline than notebook 02's, which takes the benign "
            f"updates of several rounds). What each rule did with it:\n\n"
            + _table(["rule", "its weight", "what the rule decided on", "cosine of the rule's step with it"], rows))


def server_rules(table: pd.DataFrame, cost: pd.DataFrame, stops: pd.DataFrame) -> str:
    """Interpretation of the protocol's attack against the server-side rules (:mod:`fmlbd.experiments.server`):
    which rules stop it and what each costs without attack."""
    from .metrics import BACKDOOR_MARGIN, MAIN_TASK_MARGIN

    main = cost[cost["metric"] == "main_task_acc"].set_index(["case", "rule"])["value"]
    cases = [c for c in CASE_ORDER if c in set(table["case"])]
    st = stops.set_index(["case", "rule"])
    rows = [[_name(rule)] + [f"{st.loc[(c, rule), 'backdoor_excess']:+.2f}" for c in cases]
            + [f"{main[c, rule]:.3f}" for c in cases]
            + [", ".join(f"({c})" for c in cases if st.loc[(c, rule), "stops"]) or "no"]
            for rule in dict.fromkeys(stops["rule"])]
    return (f"**What this run measured** ({table['draw'].nunique()} draws of the adversary). Backdoor accuracy "
            f"right after the attack above the rule's no-attack level (mean over draws), the pre-trained model's "
            f"main task, and whether the rule stops the attack: within {BACKDOOR_MARGIN:.2f} of the no-attack "
            f"level, with a main task within {MAIN_TASK_MARGIN:.2f} of the plain mean's.\n\n"
            + _table(["rule"] + [f"above no attack ({c})" for c in cases] + [f"main task ({c})" for c in cases]
                     + ["stops it in"], rows))


def rule_adaptive(table: pd.DataFrame) -> str:
    """Interpretation of the adversaries who know the rule (:data:`fmlbd.experiments.server.TARGETED`)."""
    from .experiments.server import excess, spread

    s = spread(table)
    end = [p for p in dict.fromkeys(table["phase"]) if p not in (NO_ATTACK, RIGHT_AFTER)][0]
    cases = [c for c in CASE_ORDER if c in set(table["case"])]
    pairs = [(a, r) for a, r in dict.fromkeys(zip(table["attack"], table["rule"])) if a != "none"]
    rows = []
    for attack, rule in pairs:
        cells = []
        for c in cases:
            now, later = excess(s, c, rule, attack), excess(s, c, rule, attack, end)["mean"]
            cells += [f"{now['mean']:+.2f} ({now['min']:+.2f} to {now['max']:+.2f})", f"{later:+.2f}"]
        rows.append([attack, _name(rule)] + cells)
    head = ["adversary", "rule"] + [h for c in cases for h in (f"right after ({c})", f"{end} ({c})")]
    return (f"**What this run measured:** backdoor accuracy on the attack training set above the rule's no-attack "
            f"level, mean over {table['draw'].nunique()} draws (lowest to highest draw in brackets).\n\n"
            + _table(head, rows))


def timeline(table: pd.DataFrame, buffer_size: int) -> str:
    """Interpretation of a buffered server's timeline (round, client, staleness; see
    :func:`fmlbd.walkthrough.benign_timeline`)."""
    stale = table[table["staleness"] > 0]
    rounds = int(table["round"].max())
    missing = sorted(set(range(int(table["client"].max()) + 1)) - set(table[table["round"] == 1]["client"]))
    text = (f"**What this run shows.** Each of the {rounds} rounds aggregated {buffer_size} updates; "
            f"{len(stale)} of the {len(table)} updates were stale (staleness above 0), the largest staleness "
            f"{int(table['staleness'].max())}. ")
    if missing:
        text += (f"Round 1 did not wait for client {', '.join(map(str, missing))}: its update arrived later, "
                 f"computed on version 0, and counted in a later round. ")
    return text + "A stale update moves today's model with a step computed on yesterday's."


def benign_metrics(table: pd.DataFrame, ways: int) -> str:
    """Interpretation of the four metrics of a model nobody attacked (``table``: mean, ci95, episodes
    per metric, as :func:`fmlbd.evaluation.scores_table` gives)."""
    chance = 1 / ways

    def above_chance(metric):
        return table.loc[metric, "mean"] - table.loc[metric, "ci95"] > chance

    def against_chance(metric):
        mean, half = table.loc[metric, "mean"], table.loc[metric, "ci95"]
        where = "above" if above_chance(metric) else "below" if mean + half < chance else "within its interval of"
        return f"{mean:.2f} ± {half:.2f}, {where} chance ({chance:.2f})"

    return (f"**What this run measured ({int(table['episodes'].iloc[0])} episodes each).** Main-task accuracy "
            f"{table.loc['main_task_acc', 'mean']:.2f} ± {table.loc['main_task_acc', 'ci95']:.2f}. Backdoor accuracy "
            f"on the attack training set {against_chance('backdoor_train_acc')}; on the validation set "
            f"{against_chance('backdoor_val_acc')}. Nobody attacked this model, so this is its **no-attack level**: "
            f"the later notebooks read backdoor accuracy against it, not against zero or chance"
            + (" (a keyed image whose class is not in the episode has no right answer, so nothing makes the model "
               "spread its answers for it evenly: chance is what random guessing would score)."
               if above_chance("backdoor_train_acc") or above_chance("backdoor_val_acc") else "."))
