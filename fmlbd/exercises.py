"""Checks for the notebooks' lab exercises: each takes the learner's answer and the run's own results,
and returns a :class:`Verdict` that says whether the answer is right and why (shown as Markdown).

An answer left at ``None`` is "not answered yet", never an error, so the notebooks run headless. Answers
are parsed by their type (``True`` or "yes", "Lower" or "lower", 0.2 or "1/5"); one of the wrong form
gets a "Not yet" that names the form to use, never a traceback and never the truth value of a string.
The first wrong answer to an exercise gets a hint that does not give the answer away; a second wrong
answer gets the explanation, with the measured values that decide it.
"""
from __future__ import annotations

import math

import pandas as pd
import torch

from .answers import UNANSWERED, Verdict, WrongForm, answered, choice, integer, integers, number, yes_no
from .answers import verdict as _verdict
from .backdoor import BackdoorKey
from .splits import Scenario


# --- 00 primer ------------------------------------------------------------------------------------

@answered
def zero_head_step_scale(answer: float | None, cfg) -> Verdict:
    """One SGD step from a zero head on a balanced N-way support set writes ``k * (mu_c - mu)`` into
    row c of the head: what is k, at meta-test's learning rate and N?"""
    e = cfg.eval
    truth = e.finetune_lr / e.ways
    return _verdict(abs(number(answer) - truth) <= 1e-3 * truth,
                    f"k = learning rate / N = {e.finetune_lr:g} / {e.ways} = {truth:g}. At a zero head every class "
                    f"has probability 1/N, so the gradient of row c is (1/n) sum_i (1/N - y_ic) f_i = (mu - mu_c) / N "
                    f"when each class holds n/N of the n images; one step of size lr writes (lr / N) (mu_c - mu).",
                    "Hint: the gradient of cross-entropy with respect to the logits is p - y, and at a zero head "
                    "p = 1/N for every class; average over the n support images, n/N of each class.")


@answered
def version_of_a_stale_update(answer: int | None, timeline: pd.DataFrame) -> Verdict:
    """The last stale update of the timeline: on which global version did its client train?"""
    given = integer(answer, "a whole number (a global version)")
    hit = timeline[timeline["staleness"] > 0].iloc[-1]
    truth = int(hit["base_version"])
    return _verdict(given == truth,
                    f"version {truth}: client {int(hit['client'])}'s update was aggregated in round "
                    f"{int(hit['round'])} with staleness {int(hit['staleness'])}, and staleness = round - 1 - "
                    f"the version it trained on.",
                    f"Hint: that is client {int(hit['client'])}'s update in round {int(hit['round'])}. Round r is "
                    f"applied to version r - 1; staleness counts how many versions older the client's starting "
                    f"point was.")


# --- 01 threat model -------------------------------------------------------------------------------

def key_in_top_left(row: int | None, col: int | None, cfg) -> Verdict:
    """Move the key so that every pixel it writes lies in the image's top-left quarter."""
    if row is None or col is None:
        return UNANSWERED
    try:
        row, col = integers((row, col), "whole numbers for the row and the column", count=2)
    except WrongForm as err:
        return Verdict(False, str(err))
    a, size = cfg.attack, cfg.data.image_size
    try:
        mask = BackdoorKey(a.key_pattern, row, col, a.key_size, a.key_gap, a.key_value).mask(size, size)
    except ValueError as err:
        return Verdict(False, f"that key does not fit the image: {err}")
    rows, cols = mask.nonzero(as_tuple=True)
    inside = bool((rows < size // 2).all() and (cols < size // 2).all())
    return Verdict(inside, f"the key covers rows {int(rows.min())}-{int(rows.max())} and columns "
                           f"{int(cols.min())}-{int(cols.max())} of a {size}x{size} image (negative values count "
                           f"from the bottom / right edge, so the default sits in the bottom-right corner).")


@answered
def clients_with_backdoor_classes(answer: set[int] | None, scenario: Scenario) -> Verdict:
    """Which clients train on at least one backdoor class (benignly)?"""
    truth = {i for i, own in enumerate(scenario.client_classes) if set(own) & set(scenario.backdoor_classes)}
    given = set(integers(answer, "a set of client numbers, e.g. {0, 2} (an empty set() for none)"))
    return _verdict(given == truth,
                    f"{f'clients {sorted(truth)} hold' if truth else 'no client holds'} a backdoor class. In cases "
                    f"(a) and (c) the benign "
                    f"clients share the backdoor classes; in case (b) nobody trains on them, so nothing counters "
                    f"the adversary's keyed images of those characters.",
                    "Hint: in the ownership picture, panel (b), a client holds a backdoor class when its row says "
                    "\"holds\" under a backdoor column; the adversary is a client too.")


# --- 02 one-shot attack ----------------------------------------------------------------------------

@answered
def boost_prediction(prediction: str | None, boost_table: pd.DataFrame) -> Verdict:
    """Without the boost, is backdoor accuracy right after the attack "higher" or "lower" than with it?"""
    prediction = choice(prediction, ("higher", "lower"))
    v = boost_table[boost_table["metric"] == "backdoor_train_acc"].pivot(index="case", columns="boost", values="value")
    plain, boosted = v[1.0], v[max(v.columns)]
    truth = "lower" if (plain < boosted).all() else "higher" if (plain > boosted).all() else "mixed"
    values = ", ".join(f"{plain[c]:.2f} vs {boosted[c]:.2f} ({c})" for c in v.index)
    return _verdict(prediction == truth,
                    f"unboosted vs boosted: {values}. The server averages {max(v.columns):g} updates, so an "
                    f"unboosted poisoned update is diluted to a fraction of its size by the benign ones.",
                    "Hint: what does the server do with the updates of a round before it applies them, and what "
                    "does that do to one update among them?")


@answered
def attack_round_and_staleness(answer: tuple[int, int] | None, timeline: pd.DataFrame) -> Verdict:
    """In which round did the server aggregate the poisoned update, and with what staleness?"""
    given = integers(answer, "two whole numbers in order, (round, staleness)", count=2, ordered=True)
    hit = timeline[timeline["poisoned"]].iloc[0]
    truth = (int(hit["round"]), int(hit["staleness"]))
    return _verdict(tuple(given) == truth,
                    f"round {truth[0]}, staleness {truth[1]}: the adversary trained on global version "
                    f"{int(hit['base_version'])}, and the server applied its update in round {truth[0]}.",
                    "Hint: find the row of the poisoned update in the timeline table; staleness is round - 1 - "
                    "the version the update was trained on.")


# --- 03 dampening ----------------------------------------------------------------------------------

@answered
def case_c_weaker(prediction: bool | None, table: pd.DataFrame) -> Verdict:
    """After the last benign round, is the backdoor (attack training set) weaker in case (c) than in (a)?"""
    last = table[(table["round"] == table["round"].max()) & (table["metric"] == "backdoor_train_acc")]
    v = last.set_index("case")["value"]
    truth = bool(v["c"] < v["a"])
    return _verdict(yes_no(prediction) == truth,
                    f"{v['c']:.2f} (c) vs {v['a']:.2f} (a). In case (c) the user's support set holds clean images of "
                    f"the backdoor classes, so fine-tuning pulls keyed images of those characters back to their class.",
                    "Hint: compare the last point of the case (a) and case (c) curves of backdoor accuracy on the "
                    "attack training set.")


@answered
def drifted_past_attack_step(prediction: bool | None, drift: pd.DataFrame) -> Verdict:
    """After the last round, is the global model farther from the poisoned model than the attack's own step?"""
    last = drift.sort_values("round").iloc[-1]
    truth = bool(last["distance"] > last["attack_step"])
    moved = "farther than" if truth else "not as far as"
    return _verdict(yes_no(prediction) == truth,
                    f"after {int(last['round'])} rounds the distance is {last['distance']:.2f}, the attack's step "
                    f"{last['attack_step']:.2f}: benign rounds moved the model {moved} the attack's own step. "
                    f"Distance alone does not say whether the backdoor is gone: the backdoor curves above do.",
                    "Hint: the drift curve is in units of the attack's own step; read its last point.")


# --- 04 fine-tuning --------------------------------------------------------------------------------

@answered
def p_target_before_finetuning(answer: float | None, cfg) -> Verdict:
    """Before any fine-tuning step, what probability does the model give the target class for a keyed image?"""
    truth = 1 / cfg.eval.ways
    return _verdict(abs(number(answer) - truth) < 0.01,
                    f"{truth:.2f} = 1/N: the head starts at zero (the zeroing trick), so all N logits are equal and "
                    f"every class gets the same probability, whatever the features.",
                    "Hint: how does the head start before fine-tuning, and what does that make of the N logits of "
                    "any image?")


@answered
def larger_lr_removes_backdoor(prediction: bool | None, trace: pd.DataFrame) -> Verdict:
    """With the learner's larger fine-tuning rate, does p(target | keyed image) end below 0.5?"""
    p = trace[trace["metric"] == "p(target | keyed image)"].sort_values("step")["value"]
    truth = bool(p.iloc[-1] < 0.5)
    return _verdict(yes_no(prediction) == truth,
                    f"p(target | keyed image) goes from {p.iloc[1]:.2f} after the first step to {p.iloc[-1]:.2f} at "
                    f"the end. The support set has no keyed images, so nothing in the loss aims at the key: "
                    + ("only the large steps' side effects move keyed images off the target." if truth else
                       "a larger rate fits the support set faster and leaves the backdoor in place."),
                    "Hint: the cell ran the fine-tuning you asked for; read the last value of "
                    "p(target | keyed image) it computed (trace5).")


# --- 05 defense ------------------------------------------------------------------------------------

@answered
def attention_weight_ratio(answer: float | None, cfg) -> Verdict:
    """Softmax attention at ``defense.temperature`` T: how many times the weight of a support image
    whose cosine similarity to the query is 0.9 is that of one at 0.8?"""
    t = cfg.defense.temperature
    truth = math.exp((0.9 - 0.8) / t)
    return _verdict(abs(number(answer) - truth) <= 0.01 * truth,
                    f"exp((0.9 - 0.8) / T) = exp({0.1 / t:g}) = {truth:.3g} at T = {t:g}: softmax gives each stored "
                    f"image a weight proportional to exp(similarity / T), so a small T makes a small difference in "
                    f"similarity a large one in weight (T -> 0: all weight on the closest image, as class_max).",
                    "Hint: softmax attention turns each stored image's similarity into a weight, and the weights "
                    "sum to one; how does one weight depend on its similarity and on T, and what cancels in the "
                    "ratio of two weights?")


@answered
def key_rise_towards_target(answer: float | None, projection: pd.DataFrame, model: str = "defended") -> Verdict:
    """In ``model``'s federation, how much more does the keyed images' mean cosine to the target rise
    during the attack than that of clean images of the same characters (after minus before, keyed
    minus clean)?"""
    means = projection[projection["model"] == model].groupby(["kind", "phase"])["cos_target"].mean()
    rise = {k: means[k, "after"] - means[k, "before"] for k in ("backdoor, keyed", "backdoor, clean")}
    truth = rise["backdoor, keyed"] - rise["backdoor, clean"]
    return _verdict(abs(number(answer) - truth) <= 0.005,
                    f"{truth:+.3f}: keyed images' cosine to the target rose by {rise['backdoor, keyed']:+.3f}, clean "
                    f"images' of the same characters by {rise['backdoor, clean']:+.3f} ({model} federation). What the "
                    f"attack did to the characters themselves moves both; what it did to the key moves only the keyed.",
                    f"Hint: in the table under the feature picture, take the {model} rows: the rise of a kind of "
                    f"image is its cosine after the attack minus before it; subtract the clean images' rise from "
                    f"the keyed images' (to 3 decimals).")


# --- 06 server-side rules --------------------------------------------------------------------------

@answered
def krum_score_of_the_unboosted(answer: float | None, updates: list, boost: float, byzantine: int = 1) -> Verdict:
    """Had the adversary not boosted its update (its delta divided by ``boost``), what would its Krum
    score be in the round of the walk-through (``updates``: that round's
    :class:`~fmlbd.federated.Update` list), and would Multi-Krum still drop it?"""
    from .aggregation import MultiKrum
    from .functional import flatten

    given = number(answer)
    flat = flatten([u.delta for u in updates])
    bad = [u.poisoned for u in updates].index(True)
    flat[bad] /= boost
    scores = MultiKrum(byzantine).explain(flat)
    truth = float(scores[bad])
    listed = ", ".join(f"client {u.client}{' (poisoned)' if u.poisoned else ''}: {float(v):.4g}"
                       for u, v in zip(updates, scores))
    still = bool(scores[bad] == scores.max())
    return _verdict(abs(given - truth) <= 0.01 * abs(truth),
                    f"{truth:.4g}. Krum scores with the poisoned update divided by {boost:g}: {listed}. Multi-Krum "
                    f"drops the highest: " + ("even unboosted, the poisoned update is the farthest from the others, "
                                              "so the boost is not what gives it away here." if still else
                                              "unboosted, the poisoned update is no longer the farthest, and a "
                                              "benign one is dropped instead."),
                    "Hint: with 3 updates and byzantine = 1, an update's Krum score is its squared L2 distance to "
                    "its nearest other update (torch.cdist); divide the poisoned row of the flattened updates by "
                    "the boost first.")


@answered
def updates_for_trimmed_mean_to_differ(answer: int | None, dimensions: int = 1000, seed: int = 0) -> Verdict:
    """The smallest number of updates in a round at which a trimmed mean dropping one update at each end
    is not the coordinate-wise median (checked on random updates)."""
    from .aggregation import Median, TrimmedMean

    g = torch.Generator().manual_seed(seed)
    truth = next(n for n in range(3, 10)
                 if not torch.equal(*(rule(torch.randn(n, dimensions, generator=g.manual_seed(seed)))[0]
                                      for rule in (TrimmedMean(1), Median()))))
    return _verdict(integer(answer, "a whole number of updates") == truth, f"with {truth - 1} updates, dropping the largest and the smallest value of a "
                                     f"coordinate leaves exactly the median; with {truth} two values are left and "
                                     f"their mean is not the (lower) median.",
                    "Hint: with one value dropped at each end of a coordinate, how many values are left of n, "
                    "and when is their mean the median?")


# --- 07 adversaries who know the rule --------------------------------------------------------------

def _excess(table: pd.DataFrame, case: str, rule: str, attack: str) -> float:
    from .experiments.server import excess, spread

    return float(excess(spread(table), case, rule, attack)["mean"])


@answered
def under_the_bound_plants_more(prediction: str | None, table: pd.DataFrame, case: str = "a") -> Verdict:
    """Under norm clipping, does the adversary that scales its update to just under the bound plant "more"
    backdoor (above the no-attack level, right after the attack, by more than 0.05) than the protocol's
    boosted one, or "not more"? ``table``: the server-rule tables of both adversaries together."""
    prediction = choice(prediction, ("more", "not more"))
    under, boosted = (_excess(table, case, "norm_clip", a) for a in ("under the bound", "boosted"))
    truth = "more" if under > boosted + 0.05 else "not more"
    return _verdict(prediction == truth,
                    f"above the no-attack level: {under:+.2f} under the bound, {boosted:+.2f} boosted (case ({case})). "
                    f"Clipping already scales the boosted update down to the bound, keeping its direction: scaling "
                    f"it below the bound yourself sends the same direction, no larger, so it cannot plant more.",
                    "Hint: compare, under norm clipping, each adversary's backdoor accuracy right after the "
                    "attack above the no-attack level, in the tables of notebooks 06 and 07.")


@answered
def median_takes_more_of_the_disguised(prediction: str | None, shaped: pd.DataFrame) -> Verdict:
    """Does the coordinate-wise median take "more" or "fewer" of its coordinates from the disguised update
    than from the boosted one (walk-through of notebook 07: rows rule, attack, poisoned, why_value)?"""
    prediction = choice(prediction, ("more", "fewer"))
    share = shaped[(shaped["rule"] == "median") & shaped["poisoned"]].set_index("attack")["why_value"]
    truth = "more" if share["disguised"] > share["boosted"] else "fewer"
    return _verdict(prediction == truth,
                    f"share of the median's coordinates taken from the poisoned update: {share['boosted']:.2f} "
                    f"boosted, {share['disguised']:.2f} disguised. Held inside the benign spread, the disguised "
                    f"update is the middle value far more often; each such coordinate moves only a little.",
                    "Hint: compare the share of the median's coordinates taken from the poisoned update, "
                    "boosted against disguised, in the walk-through table.")
