"""Plausible wrong implementations of the course lab's code tasks, one mistake each (the lab's tests
and its autograding tests grade them)."""
import torch
import torch.nn.functional as F


def interval_population_std(scores):
    return float(scores.mean()), float(1.96 * scores.std(correction=0) / len(scores) ** 0.5)


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
    "confidence_interval": (interval_population_std, "divided by E - 1 = 3", True),
    "stamp_key": (stamp_in_place, "changed its inputs in place", True),
    "boosted_update": (boost_the_weights, "boosted_update(local=[3, 1], start=[1, 1], boost=1)", True),
    "model_distance": (distance_per_tensor, "all weights together, not tensor by tensor", True),
    "finetune_step": (step_uphill, "one step on loss = sum(w**2)", True),
    "cosine_attention": (attention_by_dot_product, "cosine ignores each vector's length", True),
    "clip_updates": (clip_coordinates, "clipping [[3, 4], [0.3, 0.4]] to norm 1", True),
    "cap_update": (cap_to_the_mean, "the lower middle value, 2, as torch.median takes it", True),
}


def clip_without_zero_guard(updates, bound):
    norms = updates.norm(dim=1, keepdim=True)
    return updates / norms * norms.clamp(max=bound)   # 0 / 0: NaN for an all-zero row


def distance_nan(a, b):
    return float("nan")


def distance_numpy(a, b):
    import numpy as np
    return np.linalg.norm(np.concatenate([(a[k] - b[k]).numpy().ravel() for k in a]))   # np.float32


def distance_in_place(a, b):
    for k in a:
        a[k].sub_(b[k])
    return float(torch.cat([v.flatten() for v in a.values()]).norm())


def step_flagging_the_input(weights, loss_fn, lr):
    live = {k: v.requires_grad_() for k, v in weights.items()}
    grads = torch.autograd.grad(loss_fn(live), list(live.values()))
    return {k: (v - lr * g).detach() for (k, v), g in zip(live.items(), grads)}


def attention_by_argmax(query, support, support_y, ways, temperature):
    similarity = F.normalize(query, dim=1) @ F.normalize(support, dim=1).T
    return F.one_hot(support_y[similarity.argmax(1)], ways).float()


def cap_per_tensor(delta, benign, cap):
    norms = torch.stack([torch.cat([v.reshape(-1) for v in b.values()]).norm() for b in benign])
    bound = cap * float(norms.median())
    return {k: v * min(1.0, bound / max(float(v.norm()), 1e-12)) for k, v in delta.items()}


def clip_unwritten_for_zero_rows(updates, bound):
    norms = updates.norm(dim=1, keepdim=True)
    if (norms == 0).any():
        raise NotImplementedError("zero rows")
    return updates * (bound / norms).clamp(max=1.0)


def interval_without_square_root(scores):
    return float(scores.mean()), float(1.96 * scores.std() / len(scores))


def interval_without_z(scores):
    return float(scores.mean()), float(scores.std() / len(scores) ** 0.5)   # one standard error, not 1.96


def interval_over_two(scores):
    return float(scores.mean()), float(1.96 * scores.std() / 2)   # sqrt(E) worked out for E = 4 only


def boost_zero_as_one(local, start, boost):
    boost = boost or 1.0   # "no boost given": but 0 is a boost
    return {k: boost * (local[k] - start[k]) for k in start}
