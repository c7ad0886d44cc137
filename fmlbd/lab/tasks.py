"""The code tasks: small functions a learner writes, one per notebook, each checked against fmlbd's
own implementation of the same mechanism.

``check(name, fn)`` runs the task's public checks (what a notebook's self-check cell shows);
``grade(name, fn)`` adds the hidden ones. Both return a :class:`~fmlbd.lab.grading.Report`.
``test(name, i, fn)`` runs check ``i`` alone and raises ``AssertionError`` naming what is wrong: one
autograder test case per check (:mod:`fmlbd.lab.assign`), so a partly right function gets partial marks.

Each :class:`~fmlbd.lab.grading.Task` has public checks (a shape, a simple case worked by hand, an
invariance) and hidden ones (random inputs and edge cases compared with :attr:`Task.reference`,
fmlbd's code). Shapes: ``E`` episodes, ``B`` images, ``C`` channels, ``H x W`` pixels, ``Q``
queries, ``S`` support images, ``D`` features, ``n`` updates, ``P`` weights of a flattened model.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..aggregation import NormClip
from ..attention import Attention
from ..backdoor import BackdoorKey
from ..clients import boosted_delta
from ..evasion import shape_update
from ..functional import call, flatten, fresh_buffers
from ..meta import inner_loop
from ..metrics import mean_ci95
from ..models import ConvNet
from .grading import Report, Task, Wrong, close, copied, form, grade_checks, number, params, tensor


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _weights(seed: int, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """A small model's weights: two tensors, so a per-tensor mistake shows."""
    return {"conv.weight": (_rand(2, 1, 3, 3, seed=seed) - 0.5) * scale,
            "head.bias": (_rand(5, seed=seed + 1) - 0.5) * scale}


# --- 00 a metric's mean and its uncertainty ---------------------------------------------------------

def interval_reference(scores: torch.Tensor) -> tuple[float, float]:
    return mean_ci95(scores.detach().double().numpy())


def _interval_simple(fn) -> None:
    mean, half = form(fn(torch.tensor([0.0, 1.0, 0.0, 1.0])), (0.0, 0.0))
    number(mean, 0.5, "the mean (the first value) of the scores [0, 1, 0, 1]")
    number(half, 1.96 * (1 / 3) ** 0.5 / 2, "the half-width (the second value) for the scores [0, 1, 0, 1]: 1.96 x s / "
           "sqrt(4), s the sample standard deviation (squared deviations summed, divided by E - 1 = 3, square root)")
    for scores, want, what in (([0.0, 1.0] * 4, 1.96 * (2 / 7) ** 0.5 / 8 ** 0.5, "[0, 1] repeated 4 times (E = 8)"),
                               ([10.0, 11.0] * 2, 1.96 * (1 / 3) ** 0.5 / 2, "[10, 11, 10, 11] (the same spread)"),
                               ([1.0] * 5, 0.0, "scores that are all 1.0 (no spread)")):
        number(form(fn(torch.tensor(scores)), (0.0, 0.0))[1], want, f"the half-width for {what}")


def _interval_hidden(fn) -> None:
    for i, n in enumerate((2, 40, 300)):
        scores = _rand(n, seed=30 + i)
        for got, want, what in zip(form(fn(scores), (0.0, 0.0)), interval_reference(scores), ("mean", "half-width")):
            number(got, want, f"the {what} for {n} random scores")


# --- 01 the key --------------------------------------------------------------------------------------

def stamp_key_reference(images: torch.Tensor, key: BackdoorKey) -> torch.Tensor:
    return key.stamp(images)


def _stamp_simple(fn) -> None:
    key, images = BackdoorKey(pattern="dots", row=-8, col=-14, size=2, gap=2, value=1.0), _rand(4, 3, 28, 28)
    out = tensor(fn(images.clone(), key), images)
    mask = key.mask(28, 28)
    if not bool((out[..., mask] == key.value).all()):
        raise Wrong("the key's pixels (key.mask(H, W) is True there) should all equal key.value, in every channel")
    if not torch.equal(out[..., ~mask], images[..., ~mask]):
        raise Wrong("pixels outside the key should keep their values")


def _stamp_hidden(fn) -> None:
    cases = [(BackdoorKey(pattern="patch", row=0, col=0, size=3, value=0.5), (3, 1, 28, 28)),
             (BackdoorKey(pattern="dots", row=2, col=-10, size=1, gap=3, value=0.0), (2, 3, 28, 28)),
             (BackdoorKey(), (1, 1, 28, 28))]
    for i, (key, shape) in enumerate(cases):
        images = _rand(*shape, seed=i)
        close(fn(images, key), key.stamp(images), f"the stamped images of case {i + 1} ({key.pattern}, {shape})")


# --- 02 the boosted upload ---------------------------------------------------------------------------

def _boost_simple(fn) -> None:
    local, start = {"w": torch.tensor([3.0, 1.0])}, {"w": torch.tensor([1.0, 1.0])}
    params(fn(copied(local), copied(start), 1.0), {"w": torch.tensor([2.0, 0.0])},
           "boosted_update(local=[3, 1], start=[1, 1], boost=1)")
    params(fn(copied(local), copied(start), 3.0), {"w": torch.tensor([6.0, 0.0])},
           "boosted_update(local=[3, 1], start=[1, 1], boost=3)")


def _boost_hidden(fn) -> None:
    local, start = _weights(1), _weights(2)
    for boost in (3.0, 0.5, 0.0):
        params(fn(local, start, boost), boosted_delta(local, start, boost), f"the upload with boost {boost}")


# --- 03 how far the global model is from the poisoned one -------------------------------------------

def distance_reference(a: dict, b: dict) -> float:
    return float((flatten([a]) - flatten([b])).norm())


def _distance_simple(fn) -> None:
    number(fn({"w": torch.tensor([3.0, 0.0])}, {"w": torch.tensor([0.0, 4.0])}), 5.0, "distance([3, 0], [0, 4])")
    a, b = {"w": torch.tensor([3.0]), "b": torch.tensor([0.0])}, {"w": torch.tensor([0.0]), "b": torch.tensor([4.0])}
    number(fn(a, b), 5.0,
           "the distance over two tensors, w: 3 -> 0 and b: 0 -> 4 (all weights together, not tensor by tensor)")
    a = _weights(3)
    number(fn(a, a), 0.0, "the distance of a model to itself")


def _distance_hidden(fn) -> None:
    a, b = _weights(4), _weights(5, scale=10.0)
    number(fn(a, b), distance_reference(a, b), "the distance between two random models")
    number(fn(b, a), distance_reference(a, b), "the distance with the two models swapped")


# --- 04 one fine-tuning step -------------------------------------------------------------------------

def finetune_step_reference(weights: dict, loss_fn: Callable, lr: float) -> dict:
    """(For the hidden check, which builds ``loss_fn`` from a network and compares with fmlbd's inner loop.)"""
    live = {k: v.detach().requires_grad_() for k, v in weights.items()}
    grads = torch.autograd.grad(loss_fn(live), list(live.values()))
    return {k: (v - lr * g).detach() for (k, v), g in zip(live.items(), grads)}


def _square(p: dict) -> torch.Tensor:
    return (p["w"] ** 2).sum()


def _finetune_simple(fn) -> None:
    w = {"w": torch.tensor([1.0, 2.0])}
    out = fn(w, _square, 0.1)
    params(out, {"w": torch.tensor([0.8, 1.6])}, "one step on loss = sum(w**2) from w = [1, 2], lr 0.1")
    if out["w"].requires_grad:
        raise Wrong("the new weights still require gradients: detach them (v.detach())")


def _finetune_hidden(fn) -> None:
    torch.manual_seed(0)
    model = ConvNet(1, 4, 3, 28)
    weights = {k: v.detach().clone() for k, v in model.named_parameters()}
    x, y = _rand(6, 1, 28, 28, seed=7), torch.tensor([0, 1, 2, 0, 1, 2])
    buffers = fresh_buffers(model)
    loss_fn = lambda p: F.cross_entropy(call(model, p, dict(buffers), x, train=True), y)  # noqa: E731
    params(fn(weights, loss_fn, 0.1), inner_loop(model, weights, x, y, 1, 0.1), "one step on a network's support set")


# --- 05 attention over support features --------------------------------------------------------------

def attention_reference(query: torch.Tensor, support: torch.Tensor, support_y: torch.Tensor, ways: int,
                        temperature: float) -> torch.Tensor:
    similarity = F.normalize(query, dim=1) @ F.normalize(support, dim=1).T
    return Attention("softmax", temperature).class_scores(similarity, support_y, ways)


def _attention_simple(fn) -> None:
    support, y = torch.eye(3), torch.tensor([0, 1, 2])
    out = tensor(fn(torch.tensor([[0.0, 5.0, 0.0]]), support, y, 3, 0.01), torch.zeros(1, 3), "the class probabilities")
    if not torch.allclose(out.sum(1), torch.ones(1), atol=1e-5):
        raise Wrong("each query's class probabilities should sum to 1")
    if float(out[0, 1]) < 0.99:
        raise Wrong("a query pointing the same way as the one support image of class 1, at temperature 0.01, "
                    f"should get probability ~1 for class 1, got {float(out[0, 1]):.3f}")
    out = fn(torch.tensor([[1.0, 1.0, 0.0]]), support, y, 3, 1.0)
    if abs(float(out[0, 0] - out[0, 1])) > 1e-5 or float(out[0, 2]) >= float(out[0, 0]):
        raise Wrong("a query as close (cosine) to the support image of class 0 as to that of class 1 should give "
                    "both the same probability, and more than class 2: a softmax over the support, not an argmax")
    q, s, y2 = _rand(2, 4), _rand(4, 4, seed=1), torch.tensor([0, 0, 1, 2])
    close(fn(q * torch.tensor([[3.0], [0.2]]), s * torch.tensor([[0.5], [2.0], [1.0], [4.0]]), y2, 3, 0.1),
          fn(q, s, y2, 3, 0.1), "probabilities of features rescaled row by row (cosine ignores each vector's length)")


def _attention_hidden(fn) -> None:
    q, s, y = _rand(5, 8) - 0.5, _rand(6, 8, seed=2) - 0.5, torch.tensor([0, 0, 1, 1, 2, 3])
    for t in (1.0, 0.1, 0.01):
        close(fn(q, s, y, 4, t), attention_reference(q, s, y, 4, t), f"the probabilities at temperature {t}")
    close(fn(q, s, y, 5, 0.1), attention_reference(q, s, y, 5, 0.1),
          "the probabilities with a class of no support image")


# --- 06 norm clipping --------------------------------------------------------------------------------

def clip_reference(updates: torch.Tensor, bound: float) -> torch.Tensor:
    return updates * NormClip(bound=bound).explain(updates)[:, None]


def _clip_simple(fn) -> None:
    updates = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    close(fn(updates, 1.0), torch.tensor([[0.6, 0.8], [0.3, 0.4]]),
          "clipping [[3, 4], [0.3, 0.4]] to norm 1 (the long one shrinks to norm 1, the short one is kept)")
    close(fn(torch.zeros(2, 3), 1.0), torch.zeros(2, 3), "clipping all-zero updates (no division by zero)")


def _clip_hidden(fn) -> None:
    updates = (_rand(4, 50) - 0.5) * torch.tensor([[1.0], [10.0], [0.1], [100.0]])
    for bound in (0.5, 5.0, 1e3):
        close(fn(updates, bound), clip_reference(updates, bound), f"the clipped updates at bound {bound}")
    zero = torch.zeros(2, 3)
    close(fn(zero, 1.0), zero, "clipping all-zero updates (no division by zero)")


# --- 07 an update capped to a benign size ------------------------------------------------------------

def cap_reference(delta: dict, benign: list[dict], cap: float) -> dict:
    return shape_update(delta, benign, norm_cap=cap)


def _cap_simple(fn) -> None:
    benign = [{"w": torch.tensor([1.0, 0.0]), "b": torch.tensor([0.0])},
              {"w": torch.tensor([0.0, 2.0]), "b": torch.tensor([0.0])},
              {"w": torch.tensor([3.0, 0.0]), "b": torch.tensor([0.0])},
              {"w": torch.tensor([0.0, 0.0]), "b": torch.tensor([7.0])}]
    params(fn({"w": torch.tensor([6.0, 0.0]), "b": torch.tensor([8.0])}, benign, 1.0),
           {"w": torch.tensor([1.2, 0.0]), "b": torch.tensor([1.6])},
           "w = [6, 0], b = [8] (norm 10, all weights together) capped to 1 x the median of the benign norms "
           "1, 2, 3, 7 (the lower middle value, 2, as torch.median takes it): norm 2, same direction")
    params(fn({"w": torch.tensor([0.6, 0.0]), "b": torch.tensor([0.8])}, benign, 1.0),
           {"w": torch.tensor([0.6, 0.0]), "b": torch.tensor([0.8])},
           "an update already below the cap (norm 1 < 2) is kept as it is")


def _cap_hidden(fn) -> None:
    big = _weights(20, scale=50.0)
    for n in (5, 4):   # skewed norms (the mean is far from the median); an odd and an even count
        benign = [_weights(10 + i, scale=s) for i, s in enumerate((1.0, 1.5, 2.0, 8.0, 30.0)[:n])]
        for cap in (0.95, 2.0):
            params(fn(big, benign, cap), cap_reference(big, benign, cap),
                   f"a large update capped at {cap} x the median of {n} benign norms")
    small = _weights(21, scale=0.01)
    params(fn(small, benign, 0.95), cap_reference(small, benign, 0.95), "a small update (kept)")


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("confidence_interval", "00", "a metric is a mean over episodes, with an uncertainty: its 95% interval",
         interval_reference, lambda: (_rand(40, seed=29),),
         (("by hand: E = 4 and 8, a shift, no spread", _interval_simple),), (("fmlbd's mean_ci95", _interval_hidden),)),
    Task("stamp_key", "01", "what the backdoor key is: a few pixels set in every keyed image",
         stamp_key_reference, lambda: (_rand(4, 1, 28, 28), BackdoorKey()),
         (("the key's pixels and only those", _stamp_simple),), (("fmlbd's stamp", _stamp_hidden),)),
    Task("boosted_update", "02", "the one-shot attack: an upload scaled to outweigh a round's other updates",
         boosted_delta, lambda: (_weights(1), _weights(2), 3.0),
         (("boost 1 and 3 on two weights", _boost_simple),), (("fmlbd's upload", _boost_hidden),)),
    Task("model_distance", "03", "how far benign rounds move the global model from the poisoned one",
         distance_reference, lambda: (_weights(3), _weights(4)),
         (("hand-worked distances", _distance_simple),), (("random models", _distance_hidden),)),
    Task("finetune_step", "04", "fine-tuning: a gradient step on the support set's loss",
         finetune_step_reference, lambda: ({"w": torch.tensor([1.0, 2.0])}, _square, 0.1),
         (("one step on a quadratic", _finetune_simple),), (("fmlbd's inner loop on a network", _finetune_hidden),)),
    Task("cosine_attention", "05", "the matching network: class probabilities from cosine similarities",
         attention_reference, lambda: (_rand(2, 4), _rand(3, 4, seed=1), torch.tensor([0, 1, 2]), 3, 0.1),
         (("probabilities, a clear match, scale invariance", _attention_simple),),
         (("fmlbd's softmax kernel", _attention_hidden),)),
    Task("clip_updates", "06", "norm clipping: no update may be longer than the bound",
         clip_reference, lambda: (_rand(4, 50) - 0.5, 1.0),
         (("a long and a short update", _clip_simple),), (("fmlbd's NormClip", _clip_hidden),)),
    Task("cap_update", "07", "an adversary who knows the rule: its update no longer than benign ones",
         cap_reference, lambda: (_weights(20, scale=50.0), [_weights(10 + i) for i in range(3)], 0.95),
         (("capped and kept", _cap_simple),), (("fmlbd's norm cap", _cap_hidden),)),
)}


def task(name: str) -> Task:
    if name not in TASKS:
        raise KeyError(f"no code task {name!r}; the tasks are {', '.join(TASKS)}")
    return TASKS[name]


def check(name: str, fn: Callable) -> Report:
    """The public checks of task ``name`` on the learner's ``fn``."""
    return grade_checks(name, fn, task(name).public_checks)


def grade(name: str, fn: Callable) -> Report:
    """The public and the hidden checks of task ``name`` on ``fn`` (hidden: compared with fmlbd's code)."""
    return grade_checks(name, fn, task(name).checks)


def test(name: str, index: int, fn: Callable) -> None:
    """Check ``index`` of task ``name`` on ``fn``: ``AssertionError`` with what is wrong, or nothing.
    (The type-and-shape check runs first: it tells an unwritten function from one that raises
    ``NotImplementedError`` for some inputs only.)"""
    checks = task(name).checks
    report = grade_checks(name, fn, checks[:1] + (checks[index:index + 1] if index else ()))
    if not report.written:
        raise AssertionError(f"{name} is not written yet: it still raises NotImplementedError")
    outcome = report.outcomes[-1]
    if not outcome.ok:
        raise AssertionError(f"{outcome.check}: {outcome.message}")
