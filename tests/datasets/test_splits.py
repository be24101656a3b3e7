"""Splits by group: no leakage, deterministic, independent of input order, fractions respected."""
import dataclasses
import random

import pytest

from tfseg.datasets.splits import Split, split_by_group, split_by_patient
from tfseg.errors import ConfigError


def _items(num_groups=10, per_group=4):
    return [(f"p{g:02d}", s) for g in range(num_groups) for s in range(per_group + g % 3)]


def _group(item):
    return item[0]


def _groups_of(part):
    return {_group(item) for item in part}


def test_every_item_once_and_no_group_in_two_parts():
    items = _items()
    split = split_by_group(items, _group, val_fraction=0.2, test_fraction=0.2, seed=3)
    assert isinstance(split, Split)
    assert sorted(split.train + split.val + split.test) == sorted(items)
    train, val, test = map(_groups_of, split)
    assert not train & val and not train & test and not val & test
    assert (len(train), len(val), len(test)) == (6, 2, 2)


def test_groups_given_as_list_match_callable():
    items = _items()
    by_list = split_by_group(items, [i[0] for i in items], val_fraction=0.3, seed=1)
    by_callable = split_by_group(items, _group, val_fraction=0.3, seed=1)
    assert by_list == by_callable


def test_deterministic_and_seed_dependent():
    items = _items(num_groups=20)
    a = split_by_group(items, _group, val_fraction=0.25, seed=7)
    b = split_by_group(items, _group, val_fraction=0.25, seed=7)
    assert a == b
    others = [_groups_of(split_by_group(items, _group, val_fraction=0.25, seed=s).val) for s in range(1, 6)]
    assert any(groups != _groups_of(a.val) for groups in others)


def test_membership_does_not_depend_on_input_order():
    items = _items(num_groups=12)
    shuffled = list(items)
    random.Random(0).shuffle(shuffled)
    a = split_by_group(items, _group, val_fraction=0.2, test_fraction=0.1, seed=5)
    b = split_by_group(shuffled, _group, val_fraction=0.2, test_fraction=0.1, seed=5)
    for part_a, part_b in zip(a, b):
        assert sorted(part_a) == sorted(part_b)
    # within a part, items keep their input order
    assert b.train == [item for item in shuffled if item in set(a.train)]


@pytest.mark.parametrize("num_groups, val, test, expected", [
    (10, 0.2, 0.0, (8, 2, 0)),
    (10, 0.2, 0.1, (7, 2, 1)),
    (15, 0.2, 0.0, (12, 3, 0)),
    (3, 0.1, 0.1, (1, 1, 1)),   # small fractions still give each requested part one group
    (4, 0.0, 0.0, (4, 0, 0)),
])
def test_group_counts_follow_fractions(num_groups, val, test, expected):
    items = _items(num_groups=num_groups, per_group=2)
    split = split_by_group(items, _group, val_fraction=val, test_fraction=test)
    assert tuple(len(_groups_of(part)) for part in split) == expected


@pytest.mark.parametrize("kwargs", [
    dict(val_fraction=-0.1), dict(val_fraction=1.0), dict(test_fraction=1.5), dict(val_fraction="0.2"),
    dict(val_fraction=0.5, test_fraction=0.5), dict(seed=-1), dict(seed=1.5),
])
def test_bad_arguments(kwargs):
    with pytest.raises(ConfigError):
        split_by_group(_items(), _group, **kwargs)


def test_too_few_groups():
    items = [("a", 0), ("a", 1), ("b", 0)]
    with pytest.raises(ConfigError, match="too few groups"):
        split_by_group(items, _group, val_fraction=0.2, test_fraction=0.2)
    with pytest.raises(ConfigError, match="too few groups"):
        split_by_group([], [], val_fraction=0.2)


def test_groups_length_mismatch():
    with pytest.raises(ConfigError, match="one key per item"):
        split_by_group([1, 2, 3], ["a", "b"])


def test_unhashable_group_key():
    with pytest.raises(ConfigError, match="hashable"):
        split_by_group([1, 2], [[1], [2]])


def test_mixed_key_types_still_sort():
    items = list(range(6))
    keys = [1, 1, "a", "a", 2.5, None]
    split = split_by_group(items, keys, val_fraction=0.25, seed=0)
    assert split == split_by_group(items, keys, val_fraction=0.25, seed=0)
    assert sorted(split.train + split.val) == items


@dataclasses.dataclass(frozen=True)
class _Case:
    case: str
    index: int


@dataclasses.dataclass(frozen=True)
class _Slice:
    patient: str
    case: str


def test_split_by_patient_uses_case():
    records = [_Case(f"SC-N-{c}", i) for c in range(1, 11) for i in range(3)]
    split = split_by_patient(records, val_fraction=0.2, seed=0)
    assert len({r.case for r in split.val}) == 2
    assert not {r.case for r in split.val} & {r.case for r in split.train}


def test_split_by_patient_prefers_patient():
    # several cases (studies) per patient: the patient, not the case, is the unit
    records = [_Slice(f"P{p}", f"P{p}-study{s}") for p in range(5) for s in range(3)]
    split = split_by_patient(records, val_fraction=0.2, seed=0)
    assert len({r.patient for r in split.val}) == 1
    assert len(split.val) == 3


def test_split_by_patient_needs_an_id():
    with pytest.raises(ConfigError, match="'patient' or 'case'"):
        split_by_patient([1, 2, 3])
