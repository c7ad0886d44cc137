"""fmlbd: backdoor attacks and defenses on federated meta-learning (Chen, Golubchik, Paolieri).

Data flows one way: config -> data -> episodes -> local training -> server -> metrics -> results -> plots.
"""
__version__ = "0.1.0"
