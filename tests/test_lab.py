"""The course lab's code tasks: fmlbd's own code passes every check, a stub is "not written yet", and
each plausible wrong implementation fails a check whose message names what is wrong."""
import numpy as np
import pandas as pd
import pytest
import torch

from fmlbd import cache, pipeline
from fmlbd.lab import runs, tasks as lab
from fmlbd.lab.tasks import TASKS
from tests import wrong_implementations as wrong
from tests.wrong_implementations import (WRONG, boost_the_weights, clip_coordinates, stamp_always_ink,
                                         step_not_detached, step_uphill)


def stub(*args):
    raise NotImplementedError


@pytest.mark.parametrize("name", TASKS)
def test_fmlbds_own_implementation_passes_every_check(name):
    report = lab.grade(name, TASKS[name].reference)
    assert report.ok, [o for o in report.outcomes if not o.ok]
    assert "All checks pass" in report._repr_markdown_()


@pytest.mark.parametrize("name", TASKS)
def test_an_unwritten_task_is_not_written_yet_never_a_traceback(name):
    report = lab.grade(name, stub)
    assert not report.written and not report.ok and "Not written yet" in report._repr_markdown_()


@pytest.mark.parametrize("name", TASKS)
def test_a_plausible_wrong_implementation_fails_with_a_message_that_names_the_mistake(name):
    wrong, says, public = WRONG[name]
    report = lab.grade(name, wrong)
    failed = [o for o in report.outcomes if not o.ok]
    assert report.written and failed and any(says in o.message for o in failed), report.outcomes
    assert lab.check(name, wrong).ok is not public  # caught by the public checks, or only by the hidden ones
    assert "Not yet" in report._repr_markdown_() and says in report._repr_markdown_()


@pytest.mark.parametrize("name, fn, says, public", [
    ("model_distance", wrong.distance_nan, "finite number", True),
    ("model_distance", wrong.distance_in_place, "changed its inputs in place", True),
    ("finetune_step", wrong.step_flagging_the_input, "require gradients", True),
    ("cosine_attention", wrong.attention_by_argmax, "not an argmax", True),
    ("cap_update", wrong.cap_per_tensor, "all weights together", True),
    ("clip_updates", wrong.clip_without_zero_guard, "NaN or infinity", True),
    ("clip_updates", wrong.clip_unwritten_for_zero_rows, "raised NotImplementedError", True),
    ("boosted_update", wrong.boost_zero_as_one, "the upload with boost 0.0", False),
    ("confidence_interval", wrong.interval_without_square_root, "1.96 x s / sqrt(4)", True),
    ("confidence_interval", wrong.interval_without_z, "should be 0.565803", True),
    ("confidence_interval", wrong.interval_over_two, "repeated 4 times (E = 8)", True),
])
def test_mistakes_that_once_passed_or_misled_are_caught(name, fn, says, public):
    report = lab.grade(name, fn)
    failed = [o for o in report.outcomes if not o.ok]
    assert report.written and failed and any(says in o.message for o in failed), report.outcomes
    assert lab.check(name, fn).ok is not public


def test_a_hidden_check_gives_the_learner_copies_so_its_expected_value_stays_right():
    failed = [o.check for o in lab.grade("model_distance", wrong.distance_in_place).outcomes if not o.ok]
    assert failed == ["its inputs left unchanged"]   # right values computed in place: only that point is lost


def test_a_numpy_number_is_a_number():
    assert lab.grade("model_distance", wrong.distance_numpy).ok


def test_more_mistakes_are_named():
    assert "dtype" not in str(lab.grade("finetune_step", step_not_detached).outcomes)
    assert "still require gradients" in str(lab.grade("finetune_step", step_not_detached).outcomes)
    assert "0.5" in str(lab.grade("stamp_key", stamp_always_ink).outcomes)  # the key of value 0.5


@pytest.mark.parametrize("returned, says", [
    (lambda images, key: images.numpy(), "should be a torch.Tensor, got ndarray"),
    (lambda images, key: images[0], "should have shape (4, 1, 28, 28), got (1, 28, 28)"),
    (lambda images, key: images.double(), "should have dtype torch.float32, got torch.float64"),
    (lambda images, key: images.tolist(), "should be a torch.Tensor, got list"),
    (lambda images, key: None, "should be a torch.Tensor, got NoneType"),
    (lambda images, key: images[99], "your function raised IndexError"),
])
def test_a_result_of_the_wrong_type_or_shape_is_named(returned, says):
    report = lab.check("stamp_key", returned)
    assert not report.ok and says in report.outcomes[0].message


def interval_with_a_numpy_keyword(scores):
    return float(scores.mean()), float(scores.std(ddof=1))


def test_an_error_in_the_learners_code_is_one_line_naming_the_line_that_raised_it_once():
    report = lab.check("confidence_interval", interval_with_a_numpy_keyword)
    first = report.outcomes[0].message
    assert first.startswith("your function raised TypeError at `return float(scores.mean()), float(scores.std(ddof=1))`")
    assert "\n" not in first and "tasks.py" not in first
    shown = report._repr_markdown_()
    assert shown.count("your function raised") == 1 and shown.count("the same error") == len(report.outcomes) - 1


def test_wrong_types_of_the_other_tasks_are_named():
    assert "should be a dict of tensors" in lab.check("boosted_update", lambda a, b, c: [1.0]).outcomes[0].message
    assert "should be a number" in lab.check("model_distance", lambda a, b: "5").outcomes[0].message
    assert "should be a number" in lab.check("model_distance", lambda a, b: True).outcomes[0].message
    assert "a tuple of 2 numbers, got Tensor" in lab.check("confidence_interval", lambda s: s.mean()).outcomes[0].message
    assert "got 1 of them" in lab.check("confidence_interval", lambda s: (0.5,)).outcomes[0].message
    assert "should be a number" in lab.check("confidence_interval", lambda s: ("0.5", 0.1)).outcomes[0].message
    assert "with the keys" in lab.check("cap_update", lambda d, b, c: {"x": next(iter(d.values()))}).outcomes[0].message
    with pytest.raises(KeyError, match="no code task 'stamp'; the tasks are confidence_interval, stamp_key"):
        lab.check("stamp", stub)


def test_there_is_a_task_for_every_notebook_of_the_series():
    assert sorted(t.notebook for t in TASKS.values()) == ["00", "01", "02", "03", "04", "05", "06", "07"]
    assert all(t.public and t.hidden for t in TASKS.values())


# --- each task in its notebook's experiment ------------------------------------------------------------

def cache_files(cfg) -> dict:
    """Every file under the cache with its size and modification time."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in cache.cache_dir(cfg).rglob("*") if p.is_file()}


@pytest.fixture
def attacked(smoke_cached):
    cfg = smoke_cached
    return cfg, pipeline.attack(cfg, "a", progress=False)


SCORES = {"main_task_acc": np.array([0.6, 0.8, 0.7, 0.9]), "backdoor_val_acc": np.ones(4)}
RUNS = {
    "confidence_interval": lambda cfg, att, fn: runs.intervals(SCORES, fn),
    "stamp_key": lambda cfg, att, fn: runs.key_on_images(cfg, att, "a", fn),
    "boosted_update": lambda cfg, att, fn: runs.attack_round_with(cfg, att, "a", fn),
    "model_distance": lambda cfg, att, fn: runs.distance_over_rounds(cfg, att, "a", fn),
    "finetune_step": lambda cfg, att, fn: runs.finetune_with(cfg, att, "a", fn, steps=3),
    "cosine_attention": lambda cfg, att, fn: runs.attention_on_keyed(cfg, att, "a", fn),
    "clip_updates": lambda cfg, att, fn: runs.clipped_round(cfg, att, fn),
    "cap_update": lambda cfg, att, fn: runs.capped_update(cfg, att, fn),
}


def yours_and_fmlbds(table: pd.DataFrame, value: str) -> tuple[list, list]:
    if "implementation" not in table:  # 01: one row per kind of image
        t = table.set_index("images")[value]
        return [t["your key"]], [t["fmlbd's key"]]
    return (table[table["implementation"] == "yours"][value].tolist(),
            table[table["implementation"] == "fmlbd's"][value].tolist())


VALUE = {"confidence_interval": "ci95", "stamp_key": "to_target", "boosted_update": "value", "model_distance": "distance", "finetune_step": "p_target",
         "cosine_attention": "to_target", "clip_updates": "norm_after", "cap_update": "norm"}


@pytest.mark.parametrize("name", TASKS)
def test_fmlbds_own_code_in_the_learners_place_gives_fmlbds_result(name, attacked):
    cfg, att = attacked
    yours, theirs = yours_and_fmlbds(RUNS[name](cfg, att, TASKS[name].reference), VALUE[name])
    assert yours == pytest.approx(theirs, rel=1e-5, abs=1e-6)


def test_a_wrong_function_shows_another_result_and_never_touches_the_cache(attacked):
    cfg, att = attacked
    pipeline.dampening_snapshots(cfg, "a", progress=False)  # fmlbd's own stage, which 03's run reads
    before = cache_files(cfg)
    key = runs.key_on_images(cfg, att, "a", lambda images, key: images).set_index("images")["to_target"]
    assert key["your key"] == key["no key"]  # no key stamped: the images are the clean ones
    uphill = runs.finetune_with(cfg, att, "a", step_uphill, steps=3)
    yours, theirs = yours_and_fmlbds(uphill, "p_target")
    assert yours[0] == theirs[0] and yours[1:] != theirs[1:]
    clip = runs.clipped_round(cfg, att, clip_coordinates)
    yours, theirs = yours_and_fmlbds(clip, "norm_after")
    assert yours != theirs
    upload = runs.attack_round_with(cfg, att, "a", boost_the_weights)  # the whole local model, boosted
    yours, theirs = yours_and_fmlbds(upload, "value")
    assert yours != theirs
    for name, run in RUNS.items():  # every task's run, with its wrong implementation
        run(cfg, att, WRONG[name][0])
    assert cache_files(cfg) == before


def test_an_unwritten_or_failing_function_runs_nothing():
    ran = []
    shown = runs.outcome("clip_updates", stub, lambda: ran.append(1))
    assert not ran and not shown.written
    shown = runs.outcome("clip_updates", clip_coordinates, lambda: ran.append(1))
    assert not ran and not shown.ok and "to norm 1" in shown._repr_markdown_()
    assert runs.outcome("boosted_update", wrong.boost_zero_as_one, lambda: "ran") == "ran"  # passes the public checks


@pytest.mark.parametrize("name", TASKS)
def test_each_check_is_one_test_case_that_names_the_mistake(name):
    task, (wrong, says, _) = TASKS[name], WRONG[name]
    for i in range(len(task.checks)):
        lab.test(name, i, task.reference)
    with pytest.raises(AssertionError, match="not written yet"):
        lab.test(name, 0, stub)
    failed = []
    for i in range(len(task.checks)):
        try:
            lab.test(name, i, wrong)
        except AssertionError as err:
            failed.append(str(err))
    lab.test(name, 0, wrong)  # the plausible mistakes return the right type and shape: partial marks
    assert any(says in f for f in failed), failed


@pytest.mark.parametrize("returned", [None, "5", [1.0], {"x": torch.zeros(2)}, torch.zeros(3, 3)])
def test_the_type_and_shape_check_rejects_other_types(returned):
    for name in TASKS:
        with pytest.raises(AssertionError, match="the result"):
            lab.test(name, 0, lambda *args: returned)
