"""The course lab's code tasks: fmlbd's own code passes every check, a stub is "not written yet", and
each plausible wrong implementation fails a check whose message names what is wrong."""
import pytest
import torch
import torch.nn.functional as F

from fmlbd.lab import tasks as lab
from fmlbd.lab.tasks import TASKS


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


def stamp_in_place(images, key):
    images[..., key.mask(*images.shape[-2:])] = key.value
    return images


def stamp_always_ink(images, key):
    return torch.where(key.mask(*images.shape[-2:]), torch.ones_like(images), images)


def boost_the_weights(local, start, boost):
    return {k: boost * v for k, v in local.items()}


def distance_per_tensor(a, b):
    return sum(float((a[k] - b[k]).norm()) for k in a)


def step_uphill(weights, loss_fn, lr):
    live = {k: v.detach().requires_grad_() for k, v in weights.items()}
    grads = torch.autograd.grad(loss_fn(live), list(live.values()))
    return {k: (v + lr * g).detach() for (k, v), g in zip(live.items(), grads)}


def step_not_detached(weights, loss_fn, lr):
    live = {k: v.detach().requires_grad_() for k, v in weights.items()}
    grads = torch.autograd.grad(loss_fn(live), list(live.values()))
    return {k: v - lr * g for (k, v), g in zip(live.items(), grads)}


def attention_by_dot_product(query, support, support_y, ways, temperature):
    return (query @ support.T / temperature).softmax(1) @ F.one_hot(support_y, ways).float()


def clip_coordinates(updates, bound):
    return updates.clamp(-bound, bound)


def cap_to_the_mean(delta, benign, cap):
    flat = torch.cat([v.reshape(-1) for v in delta.values()])
    bound = cap * float(torch.stack([torch.cat([v.reshape(-1) for v in b.values()]).norm() for b in benign]).mean())
    scale = min(1.0, bound / float(flat.norm()))
    return {k: v * scale for k, v in delta.items()}


#: task -> (a plausible wrong implementation, what the failing check says, whether a public check catches it)
WRONG = {
    "stamp_key": (stamp_in_place, "changed the images in place", True),
    "boosted_update": (boost_the_weights, "boosted_update(local, global, boost=1)", True),
    "model_distance": (distance_per_tensor, "all weights together, not tensor by tensor", True),
    "finetune_step": (step_uphill, "one step on loss = sum(w**2)", True),
    "cosine_attention": (attention_by_dot_product, "cosine ignores length", True),
    "clip_updates": (clip_coordinates, "clipping [[3, 4], [0.3, 0.4]] to norm 1", True),
    "cap_update": (cap_to_the_mean, "a large update capped at 0.95 x the median", False),
}


@pytest.mark.parametrize("name", TASKS)
def test_a_plausible_wrong_implementation_fails_with_a_message_that_names_the_mistake(name):
    wrong, says, public = WRONG[name]
    report = lab.grade(name, wrong)
    failed = [o for o in report.outcomes if not o.ok]
    assert report.written and failed and any(says in o.message for o in failed), report.outcomes
    assert lab.check(name, wrong).ok is not public  # caught by the public checks, or only by the hidden ones
    assert "Not yet" in report._repr_markdown_() and says in report._repr_markdown_()


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


def test_wrong_types_of_the_other_tasks_are_named():
    assert "should be a dict of tensors" in lab.check("boosted_update", lambda a, b, c: [1.0]).outcomes[0].message
    assert "should be a number" in lab.check("model_distance", lambda a, b: "5").outcomes[0].message
    assert "should be a number" in lab.check("model_distance", lambda a, b: True).outcomes[0].message
    assert "should have the keys" in lab.check("cap_update", lambda d, b, c: {"x": d["w"]}).outcomes[0].message
    with pytest.raises(KeyError, match="no code task 'stamp'; the tasks are stamp_key"):
        lab.check("stamp", stub)


def test_there_is_a_task_for_every_notebook_of_the_series():
    assert sorted(t.notebook for t in TASKS.values()) == ["01", "02", "03", "04", "05", "06", "07"]
    assert all(t.public and t.hidden for t in TASKS.values())
