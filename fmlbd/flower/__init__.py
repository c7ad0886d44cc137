"""The federation on Flower (optional extra: ``pip install "fmlbd[flower]"``).

The protocol's buffered server runs as a Flower ServerApp (:mod:`fmlbd.flower.server_app`) and
fmlbd's benign and malicious clients as a ClientApp (:mod:`fmlbd.flower.client_app`): the same app
runs in Flower's Simulation Engine on one machine (:func:`fmlbd.flower.simulation.simulate`) and in
its Deployment Engine (a SuperLink and one SuperNode per client, on one machine or a classroom's;
see docs/flower.md). Nothing is computed twice: aggregation is :class:`fmlbd.federated.Server` with
the rule of :func:`fmlbd.builders.aggregation_rule`, local training the clients of
:func:`fmlbd.builders.attack_clients`; this package only carries weights and settings between them
as Flower messages (:mod:`fmlbd.flower.records`).
"""
