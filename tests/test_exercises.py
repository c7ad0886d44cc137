"""Each exercise check says "not yet" to a wrong answer, "right" to the solution, and waits for None."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from fmlbd import answers, exercises as ex
from fmlbd.config import load_config
from fmlbd.evaluation import METRICS
from fmlbd.federated import Update
from fmlbd.splits import Scenario

CFG = load_config("quick")


@pytest.fixture(autouse=True)
def first_answers():
    """Each test starts as a learner who has not answered yet (the hint goes to a first wrong answer)."""
    answers.wrong_answers.clear()


def scenario(backdoor_holders):
    clients = [(10, 11), (20,), (30,), (40,)]
    clients = [tuple(own) + ((1, 2, 3) if i in backdoor_holders else ()) for i, own in enumerate(clients)]
    return Scenario(pool=None, rotations=1, test_classes=(), client_classes=tuple(clients), target_class=0,
                    backdoor_classes=(1, 2, 3))


def boost_table(plain, boosted):
    return pd.DataFrame([{"case": c, "boost": b, "metric": m, "value": v if m == "backdoor_train_acc" else 0.5}
                         for c in "ab" for b, v in ((1.0, plain), (3.0, boosted)) for m in METRICS])


TIMELINE = pd.DataFrame({"round": [7, 7, 7, 8, 8, 8], "client": [1, 0, 2, 3, 1, 2], "poisoned": [0, 1, 0, 0, 0, 0],
                         "staleness": [0, 1, 0, 1, 0, 0], "base_version": [6, 5, 6, 6, 7, 7]}).astype(
    {"poisoned": bool})
DAMPENING = pd.DataFrame([{"case": c, "round": r, "metric": "backdoor_train_acc", "value": v}
                          for c, vals in {"a": (0.9, 0.8), "c": (0.8, 0.4)}.items() for r, v in zip((0, 100), vals)])
DRIFT = pd.DataFrame({"round": [0, 100], "distance": [0.0, 5.0], "attack_step": [2.0, 2.0]})
TRACE = pd.DataFrame([{"step": s, "metric": "p(target | keyed image)", "value": v}
                      for s, v in enumerate((0.2, 0.9, 0.8, 0.7))])
PROJECTION = pd.DataFrame([{"model": m, "phase": p, "kind": k, "cos_target": v}
                           for m in ("undefended", "defended")
                           for k, (b, a) in {"backdoor, keyed": (0.1, 0.5), "backdoor, clean": (0.1, 0.3)}.items()
                           for p, v in (("before", b), ("after", a))])


def krum_round(poisoned_delta, benign):
    """One round of 2-d updates: client 1, the adversary (client 0), client 3."""
    deltas = [benign[0], poisoned_delta, benign[1]]
    return [Update(float(i), c, 0, {"w": torch.tensor(d)}, poisoned=c == 0) for i, (c, d) in enumerate(zip((1, 0, 3), deltas))]


STILL_FAR = krum_round([30.0, 0.0], ([1.0, 0.0], [0.0, 1.0]))    # unboosted: [10, 0], still the farthest
BLENDS_IN = krum_round([3.0, 0.0], ([1.1, 0.0], [0.0, 5.0]))     # unboosted: [1, 0], next to client 1
RULE_TABLE = pd.DataFrame([{"case": "a", "rule": "norm_clip", "attack": a, "phase": p, "metric": "backdoor_train_acc",
                            "value": v} for a, p, v in (("none", "no attack", 0.3), ("boosted", "right after", 0.35),
                                                        ("under the bound", "right after", 0.36))])
SHAPED = pd.DataFrame({"rule": ["median"] * 4, "attack": ["boosted", "boosted", "disguised", "disguised"],
                       "poisoned": [True, False, True, False], "why_value": [0.1, 0.5, 0.4, 0.3]})

STALE = pd.DataFrame({"round": [1, 1, 1, 2, 2, 2, 3, 3, 3], "client": [3, 1, 2, 0, 3, 1, 2, 1, 0],
                      "staleness": [0, 0, 0, 1, 0, 0, 1, 0, 0], "base_version": [0, 0, 0, 0, 1, 1, 1, 2, 2]})

CASES = [  # (check, wrong answer, right answer, data)
    (ex.zero_head_step_scale, 0.1, 0.02, (CFG,)),
    (ex.version_of_a_stale_update, 2, 1, (STALE,)),
    (ex.key_in_top_left, (22, 22), (0, 0), (CFG,)),
    (ex.key_in_top_left, (20, 30), (2, 3), (CFG,)),  # a key that does not fit is wrong, not an error
    (ex.clients_with_backdoor_classes, {1, 2, 3}, set(), (scenario(()),)),
    (ex.clients_with_backdoor_classes, set(), {1, 2, 3}, (scenario((1, 2, 3)),)),
    (ex.boost_prediction, "higher", "lower", (boost_table(0.5, 0.9),)),
    (ex.attack_round_and_staleness, (8, 0), (7, 1), (TIMELINE,)),
    (ex.case_c_weaker, False, True, (DAMPENING,)),
    (ex.drifted_past_attack_step, False, True, (DRIFT,)),
    (ex.p_target_before_finetuning, 0.5, 0.2, (CFG,)),
    (ex.larger_lr_removes_backdoor, True, False, (TRACE,)),
    (ex.attention_weight_ratio, 1.1, math.e, (CFG,)),
    (ex.key_rise_towards_target, 0.4, 0.2, (PROJECTION,)),
    (ex.krum_score_of_the_unboosted, 9.0, 81.0, (STILL_FAR, 3.0)),
    (ex.krum_score_of_the_unboosted, 1.0, 0.01, (BLENDS_IN, 3.0)),
    (ex.updates_for_trimmed_mean_to_differ, 3, 4, ()),
    (ex.under_the_bound_plants_more, "more", "not more", (RULE_TABLE,)),
    (ex.median_takes_more_of_the_disguised, "fewer", "more", (SHAPED,)),
]


def call(check, answer, data):
    return check(*answer, *data) if check is ex.key_in_top_left else check(answer, *data)


@pytest.mark.parametrize("check, wrong, right, data", CASES, ids=lambda x: getattr(x, "__name__", None))
def test_check_fails_on_a_wrong_answer_and_passes_on_the_solution(check, wrong, right, data):
    bad, good = call(check, wrong, data), call(check, right, data)
    assert bad.ok is False and good.ok is True
    assert bad.message and good.message == call(check, right, data).message
    assert "Not yet" in bad._repr_markdown_() and "Right" in good._repr_markdown_()


@pytest.mark.parametrize("check, wrong, right, data", CASES[:1] + CASES[2:], ids=lambda x: getattr(x, "__name__", None))
def test_an_unanswered_exercise_is_not_an_error(check, wrong, right, data):
    answer = (None, None) if check is ex.key_in_top_left else None
    assert call(check, answer, data).ok is None


FORMS = [  # (check, data, right answers in every accepted form, wrong answers, answers of the wrong form)
    (ex.zero_head_step_scale, (CFG,), [0.02, "0.02", "1/50", "2%", np.float32(0.02)], [0.1, "1/5", 0.5, 0.021],
     ["lr/N", True, [0.02], ""]),
    (ex.version_of_a_stale_update, (STALE,), [1, "1", 1.0, np.int64(1)], [2, 0, 3], ["version 1", 1.5, True, [1]]),
    (ex.key_in_top_left, (CFG,), [(0, 0), ("0", "0"), (2.0, 3.0), (np.int64(1), 1)], [(22, 22), (-3, 0)],
     [("a", 0), (0.5, 0), (True, 0), ([0], 0)]),
    (ex.clients_with_backdoor_classes, (scenario((1, 2, 3)),), [{1, 2, 3}, [3, 2, 1], (1, 2, 3), {"1", "2", "3"}],
     [set(), {1, 2}, [0, 1, 2, 3]], ["1, 2, 3", 123, [1, 2, "x"], {1.5}]),
    (ex.boost_prediction, (boost_table(0.5, 0.9),), ["lower", "Lower", " LOWER "], ["higher", "Higher"],
     [True, 1, "less", ["lower"]]),
    (ex.attack_round_and_staleness, (TIMELINE,), [(7, 1), [7, 1], ("7", "1"), (7.0, 1.0)], [(8, 0), (7, 2), (7, 0)],
     ["7, 1", 7, (7,), (7, 1, 0), (7.5, 1), {7, 1}, (10**400, 1)]),
    (ex.case_c_weaker, (DAMPENING,), [True, "yes", "True", " YES ", np.bool_(True)], [False, "no", "false", "No"],
     ["maybe", 1, 0, "c", [True]]),
    (ex.drifted_past_attack_step, (DRIFT,), [True, "Yes", "true"], [False, "No", "False"], ["farther", 1.0, [True]]),
    (ex.p_target_before_finetuning, (CFG,), [0.2, "0.2", "1/5", "20%", " 1 / 5 ", np.float32(0.2)], [0.5, "1/2", 1],
     ["one fifth", True, "", float("nan"), [0.2], "1/0"]),
    (ex.larger_lr_removes_backdoor, (TRACE,), [False, "False", "no", "NO"], [True, "yes"], ["nope", 0, "0.5"]),
    (ex.attention_weight_ratio, (CFG,), [math.e, 2.72, "2.718", np.float32(2.718), torch.tensor(math.e)],
     [1.1, 1 / math.e, 10, "0.368"], ["e", True, [2.7], "exp(1)", 10**400, "1e400", -10**400]),
    (ex.key_rise_towards_target, (PROJECTION,), [0.2, "0.2", "1/5", 0.203, np.float64(0.198)], [0.4, -0.2, 0.21],
     ["a lot", True, [0.2]]),
    (ex.krum_score_of_the_unboosted, (STILL_FAR, 3.0), [81, "81", 81.5, np.float32(81.0), torch.tensor(81.0),
                                                        np.array(81.0), torch.tensor([81.0])], [729, 9, 2, 0],
     ["eighty-one", True, [81], torch.tensor([81.0, 1.0]), 10**400]),
    (ex.krum_score_of_the_unboosted, (BLENDS_IN, 3.0), [0.01, "0.01", "1%"], [0.09, 0.0, 1], ["small", False]),
    (ex.updates_for_trimmed_mean_to_differ, (), [4, "4", 4.0], [3, 5, "3"], ["four", 4.5, True]),
    (ex.under_the_bound_plants_more, (RULE_TABLE,), ["not more", "Not More", "not  more"], ["more", "MORE"],
     ["less", False, 0]),
    (ex.median_takes_more_of_the_disguised, (SHAPED,), ["more", "More"], ["fewer", "Fewer"], ["less", True, 1]),
]


@pytest.mark.parametrize("check, data, right, wrong, malformed", FORMS, ids=lambda x: getattr(x, "__name__", None))
def test_answers_are_parsed_by_type_and_a_wrong_form_is_named_not_raised(check, data, right, wrong, malformed):
    assert len(right) + len(wrong) + len(malformed) >= 4
    for answer in right:
        assert call(check, answer, data).ok is True, answer
    for answer in wrong:
        verdict = call(check, answer, data)
        assert verdict.ok is False and not verdict.message.startswith("Answer "), answer
    for answer in malformed:
        verdict = call(check, answer, data)
        assert verdict.ok is False and verdict.message.startswith("Answer ") and repr(answer) in verdict.message, answer


HINTED = [case for case in CASES if case[0] is not ex.key_in_top_left]  # its "not yet" says where the key went


@pytest.mark.parametrize("check, wrong, right, data", HINTED, ids=lambda x: getattr(x, "__name__", None))
def test_a_first_wrong_answer_gets_a_hint_not_the_answer_and_a_second_the_explanation(check, wrong, right, data):
    explanation = call(check, right, data).message
    first, second, third = (call(check, wrong, data) for _ in range(3))
    assert first.ok is second.ok is third.ok is False
    assert first.message.startswith("Hint: ") and first.message.endswith(answers.AGAIN)
    assert second.message == third.message != first.message and answers.AGAIN not in second.message
    words = {str(right).lower()} if not isinstance(right, (tuple, set)) else {str(r) for r in right}
    assert not any(w in first.message.lower() for w in words if len(w) > 1), (first.message, right)
    assert first.message.split(" Try again")[0] not in explanation
    assert call(check, right, data).ok is True  # a right answer after wrong ones is still right
