import types

import numpy as np
import pytest
import torch

from fmlbd.backdoor import BackdoorKey, make_attack_sets, poisoned_episode
from fmlbd.clients import BenignClient, MaliciousClient
from fmlbd.episodes import sample_episode
from fmlbd.metrics import score_backdoor_episode, scored_rows
from tests.helpers import toy_pool


def test_dots_key_changes_exactly_the_configured_pixels():
    key = BackdoorKey("dots", row=-8, col=-8, size=2, gap=2, value=1.0)
    images = torch.rand(3, 1, 28, 28) * 0.5
    keyed = key.stamp(images)
    changed = (keyed != images).any(0)[0]
    expected = torch.zeros(28, 28, dtype=torch.bool)
    for r in (20, 24):
        for c in (20, 24):
            expected[r:r + 2, c:c + 2] = True
    assert torch.equal(changed, expected)
    assert torch.all(keyed[:, :, expected] == 1.0)
    assert torch.equal(keyed[:, :, ~expected], images[:, :, ~expected])
    assert torch.equal(images, images.clamp(0, 0.5)), "stamping must not modify its input"


def test_patch_key_on_colour_images_and_position():
    key = BackdoorKey("patch", row=3, col=70, size=8, value=0.25)
    images = torch.ones(2, 3, 84, 84)
    keyed = key.stamp(images)
    changed = (keyed != images).any(0).any(0)
    assert changed.sum() == 64 and changed[3:11, 70:78].all()
    assert torch.all(keyed[:, :, 3:11, 70:78] == 0.25)


def test_key_that_does_not_fit_is_rejected():
    with pytest.raises(ValueError, match="key_row=25 puts a key of 8 pixels outside a 28x28 image: use -28..20"):
        BackdoorKey("patch", row=25, col=0, size=8).mask(28, 28)
    with pytest.raises(ValueError, match="key.pattern must be one of 'dots', 'patch', not 'star'"):
        BackdoorKey("star")


def test_attack_sets_are_disjoint_keyed_images_of_backdoor_classes():
    pool = toy_pool(classes=6, per_class=8, size=28)
    key = BackdoorKey()
    sets = make_attack_sets(pool, [1, 4], key, train_per_class=3)
    assert len(sets.train_x) == 6 and len(sets.val_x) == 10
    train = {tuple(s) for s in sets.train_source}
    val = {tuple(s) for s in sets.val_source}
    assert not train & val and {c for c, _ in train | val} == {1, 4}
    mask = key.mask(28, 28)
    assert torch.all(sets.train_x[:, :, mask] == 1.0)
    # outside the key, each keyed image is its clean source image
    c, i = sets.val_source[0]
    assert torch.equal(sets.val_x[0][:, ~mask], pool.images[c, i].float().div(255)[:, ~mask])


def test_poisoned_episode_always_has_target_with_keyed_images():
    pool = toy_pool(classes=10, per_class=8, size=28)
    sets = make_attack_sets(pool, [8, 9], BackdoorKey(), 4)
    rng = np.random.default_rng(0)
    for _ in range(10):
        ep = poisoned_episode(pool, list(range(6)), target=7, ways=5, shots=2, queries=2, poison=3, attack=sets, rng=rng)
        label = ep.classes.index(7)
        assert len(ep.support_y) == 13 and (ep.support_y == label).sum() == 5
        assert (ep.query_y == label).sum() == 5
        keyed = ep.support_x[-3:]
        assert torch.all(keyed[:, :, BackdoorKey().mask(28, 28)] == 1.0)


def test_poisoned_episode_can_keep_keyed_images_out_of_the_support():
    pool = toy_pool(classes=10, per_class=8, size=28)
    sets = make_attack_sets(pool, [8, 9], BackdoorKey(), 4)
    mask = BackdoorKey().mask(28, 28)
    for seed in range(5):
        ep = poisoned_episode(pool, list(range(6)), 7, 5, 2, 2, 3, sets, np.random.default_rng(seed),
                              poison_support=False)
        label = ep.classes.index(7)
        assert len(ep.support_y) == 10 and (ep.support_y == label).sum() == 2
        assert not torch.all(ep.support_x[:, :, mask] == 1.0, dim=1).any()  # no support image carries the key
        assert (ep.query_y == label).sum() == 5 and torch.all(ep.query_x[-3:, :, mask] == 1.0)


def test_poisoned_episode_can_pin_the_target_label():
    pool = toy_pool(classes=10, per_class=8, size=28)
    sets = make_attack_sets(pool, [8, 9], BackdoorKey(), 4)
    rng = np.random.default_rng(1)
    for _ in range(10):
        ep = poisoned_episode(pool, list(range(6)), 7, 5, 2, 2, 3, sets, rng, target_label=2)
        assert ep.classes[2] == 7 and torch.all(ep.support_y[-3:] == 2) and torch.all(ep.query_y[-3:] == 2)


def test_score_backdoor_episode_counts_each_set_separately():
    pool = toy_pool(classes=10, per_class=8, size=28)
    sets = make_attack_sets(pool, [8, 9], BackdoorKey(), 4)
    ep = sample_episode(pool, list(range(6)), 5, 2, 2, np.random.default_rng(0), include=[7])
    target = ep.classes.index(7)
    other = (target + 1) % 5

    def classify(x):  # pixel (0, 0) holds class*8 + index; to the target: class 8, and class 9's validation images
        source = (x[:, 0, 0, 0] * 255).round().long()
        return torch.tensor([ep.classes.index(int(v // 8)) if int(v // 8) in ep.classes
                             else target if v // 8 == 8 or v % 8 >= 4 else other for v in source])

    scores = score_backdoor_episode(classify, ep, sets, 7, "a")
    assert scores == {"meta_test_acc": 1.0, "backdoor_train_acc": 0.5, "backdoor_val_acc": 1.0}


def test_case_c_scores_only_present_classes_not_in_support():
    pool = toy_pool(classes=10, per_class=8, size=28)
    sets = make_attack_sets(pool, [8, 9], BackdoorKey(), 4)
    ep = sample_episode(pool, list(range(6)), 5, 2, 2, np.random.default_rng(0), include=[7, 8])
    mask = scored_rows(sets.val_source, ep, "c")
    support8 = set(ep.support_index[ep.classes.index(8)])
    expected = [c == 8 and i not in support8 for c, i in sets.val_source]
    assert list(mask) == expected
    assert scored_rows(sets.val_source, ep, "a").all()


class Recorder:
    """An episode source that only counts how often it is drawn from."""

    def __init__(self):
        self.calls = 0

    def __call__(self, rng):
        self.calls += 1


def fake_meta(monkeypatch):
    """Local training that draws one episode and moves every weight by +1."""
    import fmlbd.clients as clients

    def local_meta_train(model, params, sample, cfg, iterations, rng):
        sample(rng)
        return {k: v + 1.0 for k, v in params.items()}

    monkeypatch.setattr(clients, "local_meta_train", local_meta_train)


@pytest.mark.parametrize("after", ["benign", "silent"])
def test_malicious_client_attacks_once_with_boost(monkeypatch, after):
    fake_meta(monkeypatch)
    benign_sample, poison_sample = Recorder(), Recorder()
    cfg = types.SimpleNamespace(local_iterations=1)
    client = MaliciousClient(BenignClient(benign_sample, cfg), poison_sample, cfg, attack_iterations=7, boost=3.0,
                             attack_version=5, after=after)
    params = {"w": torch.zeros(2)}
    rng = np.random.default_rng(0)
    delta, poisoned = client.local_update(None, params, 4, rng)
    assert not poisoned and torch.equal(delta["w"], torch.ones(2)) and poison_sample.calls == 0
    delta, poisoned = client.local_update(None, params, 5, rng)
    assert poisoned and torch.equal(delta["w"], torch.full((2,), 3.0)) and poison_sample.calls == 1
    nxt = client.local_update(None, params, 6, rng)
    if after == "silent":
        assert nxt is None
    else:
        assert nxt[1] is False and torch.equal(nxt[0]["w"], torch.ones(2))
    assert poison_sample.calls == 1 and client.state_dict() == {"sent": 1}


def test_attack_sets_without_key_are_the_clean_images():
    pool = toy_pool(classes=6, per_class=8, size=28)
    clean = make_attack_sets(pool, [1, 4], None, train_per_class=3)
    keyed = make_attack_sets(pool, [1, 4], BackdoorKey(), train_per_class=3)
    assert np.array_equal(clean.train_source, keyed.train_source)
    c, i = clean.train_source[0]
    assert torch.equal(clean.train_x[0], pool.images[c, i].float().div(255))


def test_malicious_client_spreads_its_poison_over_consecutive_updates(monkeypatch):
    fake_meta(monkeypatch)
    benign_sample, poison_sample = Recorder(), Recorder()
    cfg = types.SimpleNamespace(local_iterations=1)
    client = MaliciousClient(BenignClient(benign_sample, cfg), poison_sample, cfg, attack_iterations=7, boost=1.0,
                             attack_version=5, poison_rounds=3)
    params, rng = {"w": torch.zeros(2)}, np.random.default_rng(0)
    sent = [client.local_update(None, params, v, rng)[1] for v in (5, 6, 7, 8, 9)]
    assert sent == [True, True, True, False, False] and poison_sample.calls == 3
    resumed = MaliciousClient(BenignClient(benign_sample, cfg), poison_sample, cfg, 7, 1.0, 5, poison_rounds=3)
    resumed.load_state_dict(client.state_dict())
    assert resumed.attacked and resumed.local_update(None, params, 10, rng)[1] is False
