"""The names every table, report, plot and exercise shares (no torch): cases, metrics, phases.

A table's ``case`` column holds one of :data:`CASES`, its ``metric`` column one of :data:`METRICS`;
the server-rule tables' ``phase`` column starts with :data:`NO_ATTACK` (the pre-trained model) and
:data:`RIGHT_AFTER` (the model right after the attack's round).
"""

CASES = ("a", "b", "c")                                     #: evaluation cases (PROTOCOL.md)
BACKDOOR_METRICS = ("meta_test_acc", "backdoor_train_acc", "backdoor_val_acc")
METRICS = ("main_task_acc",) + BACKDOOR_METRICS             #: the four metrics (fmlbd.metrics defines them)
NO_ATTACK = "no attack"                                     #: phase: before any attack
RIGHT_AFTER = "right after"                                 #: phase: right after the attack's round
