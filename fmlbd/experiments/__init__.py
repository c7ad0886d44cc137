"""Experiments: each a small spec (run, figure, headline numbers), grouped by theme, one module each.

``attack`` (one-shot attack, its draws and controls), ``persistence`` (benign rounds and
fine-tuning after the attack), ``defense`` (the local matching-network defense), ``server``
(server-side aggregation rules and adversaries who know them). The registry of
all of them is :mod:`fmlbd.registry`; the CLI, the batch and the notebooks run them through it.
"""
