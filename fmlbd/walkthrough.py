"""The mechanisms of the study in small, visible steps, for the notebooks' walk-throughs.

Each function replays one piece with the library's own building blocks (seconds on a CPU) and
returns plain data or tidy tables; :mod:`fmlbd.mechanism_plots` draws them.
"""
from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .backdoor import poisoned_episode
from .builders import (attack_sets, benign_clients, build_model, build_scenario, episode_sampler, initial_params,
                       make_federation, poisoned_sampler)
from .config import ExperimentConfig
from .defense import MatchingNetworkDefense
from .evaluation import backdoor_test_episodes
from .functional import Params, call, flatten, support_buffers
from .meta import finetune, meta_step
from .metrics import scored_rows
from .pipeline import Attacked, Trained, attack_federation, dampening_snapshots
from .splits import Scenario


def small_episodes(cfg: ExperimentConfig, scenario: Scenario, seed: int = 0) -> dict[str, tuple]:
    """A benign client's and the adversary's training episode, 1-shot with one query per class and two
    keyed images each (small enough to show): ``{name: (episode, support keyed mask, query keyed mask)}``."""
    m, a = cfg.meta, cfg.attack
    rng = np.random.default_rng(seed)
    benign = episode_sampler(replace(cfg, meta=replace(m, shots=1, queries=1)), scenario,
                             scenario.client_classes[1])(rng)
    poison = 2
    poisoned = poisoned_episode(scenario.pool, scenario.client_classes[0], scenario.target_class, m.ways, 1, 1,
                                poison, attack_sets(cfg, scenario), rng, a.target_label, a.poison_support)

    def mask(n, keyed):
        return np.arange(n) >= n - keyed
    return {"benign client 1": (benign, mask(len(benign.support_y), 0), mask(len(benign.query_y), 0)),
            "adversary (client 0)": (poisoned, mask(len(poisoned.support_y), poison if a.poison_support else 0),
                                     mask(len(poisoned.query_y), poison))}


def keyed_query_loss(cfg: ExperimentConfig, model, params: Params, episode, keyed: np.ndarray) -> float:
    """Cross-entropy of the keyed queries of a poisoned ``episode`` (labelled target) after fine-tuning
    ``params`` on its support set as a user would: low when the model has learnt the backdoor."""
    tuned, buffers = finetune(model, params, episode.support_x, episode.support_y, cfg.eval.finetune_steps,
                              cfg.eval.finetune_lr)
    with torch.no_grad():
        logits = call(model, tuned, buffers, episode.query_x[torch.from_numpy(keyed)], train=False)
    return float(F.cross_entropy(logits, episode.query_y[torch.from_numpy(keyed)]))


def live_poisoned_training(cfg: ExperimentConfig, trained: Trained, iterations: int = 10,
                           seed: int = 0) -> pd.DataFrame:
    """The adversary's poisoned local training from the pre-trained model, ``iterations`` meta-steps of
    Reptile on poisoned episodes, scoring after each the loss on keyed queries of one fixed held-out
    poisoned episode (see :func:`keyed_query_loss`). Tidy rows: iteration, metric, value."""
    sample, rng = poisoned_sampler(cfg, trained.scenario), np.random.default_rng(seed)
    probe = sample(np.random.default_rng(seed + 1))
    keyed = np.arange(len(probe.query_y)) >= len(probe.query_y) - cfg.attack.poison_per_episode
    params, rows = trained.params, []
    for i in range(iterations + 1):
        if i:
            params = meta_step(trained.model, params, sample(rng), cfg.meta, rng)
        rows.append({"iteration": i, "metric": "loss on keyed queries (target label)",
                     "value": keyed_query_loss(cfg, trained.model, params, probe, keyed)})
    return pd.DataFrame(rows)


def _flat(params: Params) -> torch.Tensor:
    return torch.cat([v.flatten() for _, v in sorted(params.items())])


def _received(federation):
    """Step ``federation`` for ever; yields ``(record, updates)`` per round, the updates as its server
    received them (arrival order)."""
    received, receive = [], federation.server.receive
    federation.server.receive = lambda update, now=0.0: received.append(update) or receive(update, now)
    while True:
        start = len(received)
        record = federation.step()
        yield record, received[start:]


def _replay_attack(cfg: ExperimentConfig, trained: Trained):
    """Replay the attack as :func:`fmlbd.pipeline.attack` does; yields ``(record, updates)`` per round."""
    with attack_federation(cfg, trained) as federation:
        yield from _received(federation)


def benign_timeline(cfg: ExperimentConfig, rounds: int) -> pd.DataFrame:
    """The first ``rounds`` rounds of the benign federation of ``cfg`` from its initial weights, one row
    per aggregated update: round, client, base_version (the global version it trained on), staleness
    (round - 1 - base_version), arrival (simulated time), aggregated (time of the round), norm (L2)."""
    scenario = build_scenario(cfg)
    model = build_model(cfg, scenario)
    rows = []
    with make_federation(cfg, model, initial_params(cfg, model), benign_clients(cfg, scenario)) as federation:
        for record, batch in _received(federation):
            rows += [{"round": record.round, "client": u.client, "base_version": u.base_version, "staleness": stale,
                      "arrival": u.arrival, "aggregated": record.time, "norm": float(_flat(u.delta).norm())}
                     for u, stale in zip(batch, record.staleness)]
            if record.round == rounds:
                return pd.DataFrame(rows)


def rounds_table(timeline: pd.DataFrame) -> pd.DataFrame:
    """One row per round of a timeline (:func:`benign_timeline`, :func:`attack_timeline`): the clients
    whose updates it aggregated, in arrival order, and the staleness of each."""
    def joined(column):
        return timeline.groupby("round")[column].agg(lambda v: ", ".join(str(int(x)) for x in v))
    return pd.DataFrame({"clients": joined("client"), "staleness": joined("staleness")})


def attack_timeline(cfg: ExperimentConfig, trained: Trained, after_rounds: int = 3) -> pd.DataFrame:
    """Replay the attack as :func:`fmlbd.pipeline.attack` does and record every update the server
    aggregates, up to ``after_rounds`` rounds after the poisoned one. Tidy rows: round, client,
    base_version, staleness, arrival (simulated time), aggregated (time of the round), poisoned,
    norm (L2 of the update) and cosine (to the mean of the round's benign updates)."""
    rows, attack_round = [], None
    for record, batch in _replay_attack(cfg, trained):
        benign = [_flat(u.delta) for u in batch if not u.poisoned]
        mean = torch.stack(benign).mean(0) if benign else None
        for u, stale in zip(batch, record.staleness):
            delta = _flat(u.delta)
            cosine = float(F.cosine_similarity(delta, mean, dim=0)) if mean is not None else float("nan")
            rows.append({"round": record.round, "client": u.client, "base_version": u.base_version,
                         "staleness": stale, "arrival": u.arrival, "aggregated": record.time,
                         "poisoned": u.poisoned, "norm": float(delta.norm()), "cosine": cosine})
        if record.poisoned and attack_round is None:
            attack_round = record.round
        if attack_round is not None and record.round >= attack_round + after_rounds:
            return pd.DataFrame(rows)


def attack_round_updates(cfg: ExperimentConfig, trained: Trained) -> list:
    """The updates (:class:`~fmlbd.federated.Update`, arrival order) of the first round that holds a
    poisoned update, as the server of ``cfg`` received them in :func:`fmlbd.pipeline.attack`."""
    return next(batch for record, batch in _replay_attack(cfg, trained) if record.poisoned)


def rules_on_one_round(updates: list, rules: dict) -> pd.DataFrame:
    """Every rule of ``rules`` (name -> :mod:`fmlbd.aggregation` rule) applied to the same round of
    ``updates``: per rule and update, its L2 norm, the weight the rule gave it, what the rule decided on
    ("why": the rule's ``explains`` and ``explain``, e.g. the clip scale for norm clipping, the share of
    coordinates taken from it for the median, the Krum score, the median cosine distance to the others
    for FLAME), and the cosine of the rule's step with the poisoned update. Tidy rows: rule, client, poisoned, norm, weight, why, why_value,
    step_norm, step_cos_poisoned."""
    flat = flatten([u.delta for u in updates])
    norms = flat.norm(dim=1)
    poisoned = [u.poisoned for u in updates]
    bad = flat[poisoned.index(True)] if True in poisoned else None
    rows = []
    for name, rule in rules.items():
        rule = copy.deepcopy(rule)  # a rule with memory sees this round as its next one, here only
        step, weights = rule(flat)
        why, values = rule.explains, rule.explain(flat, step)
        cos = float(F.cosine_similarity(step, bad, dim=0)) if bad is not None else float("nan")
        rows += [{"rule": name, "client": u.client, "poisoned": u.poisoned, "norm": float(norms[i]),
                  "weight": float(weights[i]), "why": why, "why_value": float(values[i]),
                  "step_norm": float(step.norm()), "step_cos_poisoned": cos} for i, u in enumerate(updates)]
    return pd.DataFrame(rows)


def drift_from_poisoned(cfg: ExperimentConfig, attacked: Attacked, case: str) -> pd.DataFrame:
    """How far benign rounds move the global model from the poisoned one: per evaluated round, the L2
    distance of the global model from the model right after the attack, and the size of the attack's
    own step (pre-attack -> poisoned). Tidy rows: round, distance, attack_step."""
    poisoned, step = _flat(attacked.after), float((_flat(attacked.after) - _flat(attacked.before)).norm())
    return pd.DataFrame([{"round": r, "distance": float((_flat(p) - poisoned).norm()), "attack_step": step}
                         for r, p in dampening_snapshots(cfg, case, False, attacked).items()])


def keyed_episode(cfg: ExperimentConfig, attacked: Attacked, case: str):
    """The first backdoor evaluation episode of ``case`` and its scored keyed validation images
    ``[n, ch, H, W]`` (those a user's classifier is asked about), with the target's label."""
    scenario = attacked.trained.scenario
    episode = backdoor_test_episodes(cfg, scenario, case, episodes=1)[0]
    sets = attack_sets(cfg, scenario)
    keyed = sets.val_x[torch.from_numpy(scored_rows(sets.val_source, episode, case))]
    return episode, keyed, episode.classes.index(scenario.target_class)


def finetune_trace(cfg: ExperimentConfig, attacked: Attacked, case: str, steps: int) -> pd.DataFrame:
    """Fine-tune the poisoned model on one episode's support set for ``steps`` SGD steps, as a user
    would, and after every step score: support loss, query accuracy, and the mean probability the
    model gives the target class for the episode's keyed images. Tidy rows: step, metric, value."""
    model = attacked.trained.model
    episode, keyed, target = keyed_episode(cfg, attacked, case)
    rows = []

    def score(step, params):
        buffers = support_buffers(model, params, episode.support_x)
        with torch.no_grad():
            loss = F.cross_entropy(call(model, params, buffers, episode.support_x, train=False), episode.support_y)
            query = call(model, params, buffers, episode.query_x, train=False).argmax(1)
            p_target = call(model, params, buffers, keyed, train=False).softmax(1)[:, target].mean()
        rows.extend([{"step": step, "metric": "support loss", "value": float(loss)},
                     {"step": step, "metric": "query accuracy", "value": float((query == episode.query_y).float().mean())},
                     {"step": step, "metric": "p(target | keyed image)", "value": float(p_target)}])
    score(0, attacked.after)
    finetune(model, attacked.after, episode.support_x, episode.support_y, steps, cfg.eval.finetune_lr, on_step=score)
    return pd.DataFrame(rows)


def feature_projection(models: dict[str, tuple[ExperimentConfig, Attacked]], case: str) -> pd.DataFrame:
    """Where the backdoor lives: features of the target class's images and of clean and keyed images of
    the backdoor classes (attack validation set), before and after the attack, for each of ``models``
    (name -> (config, attacked)), projected on each panel's first two principal components (PCA).
    Features use the support statistics of the first backdoor evaluation episode, as a user's model
    would. Tidy rows: model, phase, kind, x, y, cos_target (cosine to the mean target feature)."""
    rows = []
    for name, (cfg, att) in models.items():
        scenario = att.trained.scenario
        sets = attack_sets(cfg, scenario)
        clean = attack_sets(cfg, scenario, keyed=False).val_x
        target = scenario.pool.images[scenario.target_class].float() / 255
        episode = backdoor_test_episodes(cfg, scenario, case, episodes=1)[0]
        kinds = {"target class": target, "backdoor, clean": clean, "backdoor, keyed": sets.val_x}
        for phase, params in (("before", att.before), ("after", att.after)):
            buffers = support_buffers(att.trained.model, params, episode.support_x)
            with torch.no_grad():
                feats = {k: call(att.trained.model, params, buffers, x, train=False, features=True)
                         for k, x in kinds.items()}
            allf = torch.cat(list(feats.values()))
            centre = allf.mean(0)
            _, _, v = torch.pca_lowrank(allf - centre, q=2, center=False)
            mean_target = feats["target class"].mean(0)
            for kind, f in feats.items():
                xy = (f - centre) @ v[:, :2]
                cos = F.cosine_similarity(f, mean_target[None], dim=1)
                rows += [{"model": name, "phase": phase, "kind": kind, "x": float(x), "y": float(y),
                          "cos_target": float(c)} for (x, y), c in zip(xy.tolist(), cos)]
    return pd.DataFrame(rows)


def attention_weights(cfg: ExperimentConfig, attacked: Attacked, case: str, attention) -> dict:
    """The local matching network's attention for one keyed image of ``case``'s first backdoor
    evaluation episode: ``{"support_x", "support_y", "weights" [S], "query" [ch, H, W], "target_label",
    "predicted"}``."""
    episode, keyed, target = keyed_episode(cfg, attacked, case)
    defense = MatchingNetworkDefense(attacked.trained.model, attacked.after, episode.support_x, episode.support_y,
                                     attention)
    similarity = defense.similarity(keyed[:1])[0]
    weights = (similarity / attention.temperature).softmax(0)
    return {"support_x": episode.support_x, "support_y": episode.support_y, "weights": weights,
            "query": keyed[0], "target_label": target, "predicted": int(defense.predict(keyed[:1])[0])}
