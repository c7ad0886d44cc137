import numpy as np
import pytest
import torch

from fmlbd.data import ClassPool, DatasetError
from fmlbd.episodes import add_rotations, partition, rotation_family, sample_episode
from tests.helpers import toy_pool


def test_episode_invariants():
    pool = toy_pool()
    classes = list(range(2, 12))
    ep = sample_episode(pool, classes, ways=5, shots=2, queries=3, rng=np.random.default_rng(0))
    assert len(set(ep.classes)) == 5 and set(ep.classes) <= set(classes)
    assert ep.support_x.shape == (10, 1, 6, 6) and ep.query_x.shape == (15, 1, 6, 6)
    assert torch.equal(torch.bincount(ep.support_y, minlength=5), torch.full((5,), 2))
    assert torch.equal(torch.bincount(ep.query_y, minlength=5), torch.full((5,), 3))
    assert ep.support_y.min() == 0 and ep.support_y.max() == 4
    for label, cls in enumerate(ep.classes):
        # support and query images of a class never overlap
        assert not set(ep.support_index[label]) & set(ep.query_index[label])
        # every image carries its label's class (pixel value = class*8 + index)
        got = (ep.support_x[ep.support_y == label, 0, 0, 0] * 255).round().long()
        assert torch.equal(got, torch.as_tensor(cls * 8 + ep.support_index[label]))
        got_q = (ep.query_x[ep.query_y == label, 0, 0, 0] * 255).round().long()
        assert torch.equal(got_q, torch.as_tensor(cls * 8 + ep.query_index[label]))


def test_episodes_are_seeded():
    pool = toy_pool()
    a = sample_episode(pool, range(12), 5, 1, 2, np.random.default_rng(7))
    b = sample_episode(pool, range(12), 5, 1, 2, np.random.default_rng(7))
    c = sample_episode(pool, range(12), 5, 1, 2, np.random.default_rng(8))
    assert a.classes == b.classes and torch.equal(a.query_x, b.query_x)
    assert a.classes != c.classes or not np.array_equal(a.support_index, c.support_index)


def test_required_classes_are_always_included_at_random_labels():
    pool = toy_pool()
    labels = set()
    rng = np.random.default_rng(1)
    for _ in range(40):
        ep = sample_episode(pool, range(12), 5, 1, 1, rng, include=[3])
        assert 3 in ep.classes
        labels.add(ep.classes.index(3))
    assert labels == set(range(5))


@pytest.mark.parametrize("ways,shots,queries,match", [
    (11, 1, 1, "11-way episode from 10 classes"),
    (5, 6, 3, "exceeds the 8 images per class"),
    (0, 1, 1, "ways >= 1"),
])
def test_impossible_episodes_raise_clear_errors(ways, shots, queries, match):
    with pytest.raises(DatasetError, match=match):
        sample_episode(toy_pool(), range(10), ways, shots, queries, np.random.default_rng(0))


def test_rotations_make_new_classes_of_rotated_images():
    pool = toy_pool(classes=3)
    img = torch.zeros(3, 8, 1, 6, 6, dtype=torch.uint8)
    img[:, :, :, 0, 1] = 255  # a mark at row 0, column 1
    rot = add_rotations(ClassPool(img, pool.names, pool.groups), 4)
    assert rot.num_classes == 12 and rot.names[5] == "c1@90"
    assert rotation_family(1, 4) == [4, 5, 6, 7]
    assert torch.equal(rot.images[5], torch.rot90(img[1], 1, (-2, -1)))
    assert torch.equal(rot.images[4], img[1])


def test_partition_is_disjoint_and_covers():
    shares = partition(list(range(23)), 4, np.random.default_rng(0))
    flat = [c for s in shares for c in s]
    assert sorted(flat) == list(range(23)) and {len(s) for s in shares} <= {5, 6}
    with pytest.raises(DatasetError):
        partition([1, 2], 4, np.random.default_rng(0))


def test_pinned_class_always_gets_its_label():
    pool = toy_pool()
    rng, free_rng = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(20):
        ep = sample_episode(pool, range(12), 5, 2, 1, rng, include=[7], pinned={7: 0})
        free = sample_episode(pool, range(12), 5, 2, 1, free_rng, include=[7])
        assert ep.classes[0] == 7 and set(ep.classes) == set(free.classes)
        got = (ep.support_x[ep.support_y == 0, 0, 0, 0] * 255).round().long()
        assert torch.equal(got, torch.as_tensor(7 * 8 + ep.support_index[0]))
    with pytest.raises(DatasetError, match="pin"):
        sample_episode(pool, range(12), 5, 2, 1, rng, include=[7], pinned={3: 0})
    with pytest.raises(DatasetError, match="pin"):
        sample_episode(pool, range(12), 5, 2, 1, rng, include=[7], pinned={7: 5})
