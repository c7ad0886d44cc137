import pytest

from fmlbd.data import DatasetError, load_omniglot
from fmlbd.splits import make_scenario


@pytest.fixture(scope="module")
def base(omniglot_root):
    return load_omniglot(omniglot_root, "minimal", 28)


@pytest.mark.parametrize("case", ["a", "b", "c"])
def test_scenario_ownership(base, case):
    s = make_scenario(base, ("Sanskrit", "Tagalog"), clients=4, rotations=4, case=case, backdoor_classes=3, seed=0)
    pool = s.pool
    assert pool.num_classes == 4 * base.num_classes
    assert len(s.test_classes) == 42 + 17
    assert {pool.groups[c] for c in s.test_classes} == {"Sanskrit", "Tagalog"}
    train = [c for share in s.client_classes for c in share]
    assert len(train) == len(set(train)), "client shares must be disjoint"
    assert not set(train) & set(s.test_classes)
    assert {pool.groups[c] for c in train}.isdisjoint({"Sanskrit", "Tagalog"})
    # rotation families stay with one owner
    for share in s.client_classes:
        for c in share:
            if c not in (s.target_class, *s.backdoor_classes):
                assert set(range(c - c % 4, c - c % 4 + 4)) <= set(share)
    benign = set(c for share in s.client_classes[1:] for c in share)
    assert s.target_class in benign and s.target_class not in s.client_classes[0]
    assert set(s.backdoor_classes).isdisjoint(s.client_classes[0])
    if case == "b":
        assert set(s.backdoor_classes).isdisjoint(benign)
    else:
        assert set(s.backdoor_classes) <= benign
    # rotated copies of attack classes are used by nobody
    attack_families = {c + r for c in (s.target_class, *s.backdoor_classes) for r in (1, 2, 3)}
    assert attack_families.isdisjoint(train)


def test_scenario_is_seeded(base):
    a = make_scenario(base, ("Tagalog",), 4, 1, "a", 3, seed=0)
    b = make_scenario(base, ("Tagalog",), 4, 1, "a", 3, seed=0)
    c = make_scenario(base, ("Tagalog",), 4, 1, "a", 3, seed=1)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_unknown_test_alphabet_lists_available(base):
    with pytest.raises(DatasetError, match="available: .*Balinese"):
        make_scenario(base, ("Klingon",), 4, 1, "a", 3, seed=0)
