"""Train/validation/test splits by group (patient, case), never by item, so no patient leaks across.

Groups are sorted, then shuffled with a seeded generator and cut by the fractions: the same groups
and seed always give the same split, whatever the order of the input. Within each part the items
keep their input order.

Example:
    >>> items = [f"case{c}_slice{s}" for c in range(5) for s in range(3)]
    >>> split = split_by_group(items, lambda item: item.split("_")[0], val_fraction=0.2)
    >>> len(split.train), len(split.val), len(split.test)
    (12, 3, 0)
"""
import math
from typing import Any, List, NamedTuple

import numpy as np

from tfseg.errors import ConfigError


class Split(NamedTuple):
    """The three parts of a split; each a list of items (empty when its fraction is 0)."""

    train: List[Any]
    val: List[Any]
    test: List[Any]


def _check_fraction(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not 0.0 <= float(value) < 1.0:
        raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def _part_size(fraction, num_groups):
    """Groups for a part: the rounded share, at least one when the fraction is above zero."""
    if fraction == 0.0:
        return 0
    return max(1, int(math.floor(fraction * num_groups + 0.5)))


def _sorted_groups(keys):
    unique = set(keys)
    try:
        return sorted(unique)
    except TypeError:  # mixed, unorderable key types: order by type then text
        return sorted(unique, key=lambda k: (type(k).__name__, repr(k)))


def split_by_group(items, groups, val_fraction=0.2, test_fraction=0.0, seed=0):
    """Split items into train/val/test so that all items of one group land in the same part.

    Args:
        items: any sequence of items (records, paths, ids).
        groups: a list of group keys, one per item, or a callable item -> key. Keys must be hashable.
        val_fraction: share of the groups for validation, in [0, 1).
        test_fraction: share of the groups for test, in [0, 1).
        seed: integer seed of the shuffle.

    Returns:
        A `Split` of three lists. A part whose fraction is above zero gets at least one group;
        train always keeps at least one.

    Raises:
        ConfigError: a fraction out of range, fractions summing to 1 or more, `groups` of the
            wrong length, or too few groups to give every requested part one.

    Example:
        >>> split = split_by_group(list("aabbccdd"), list("11223344"), val_fraction=0.25, test_fraction=0.25)
        >>> sorted(map(len, split))
        [2, 2, 4]
    """
    val_fraction = _check_fraction("val_fraction", val_fraction)
    test_fraction = _check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(f"val_fraction + test_fraction must be below 1 to leave groups for training, "
                          f"got {val_fraction} + {test_fraction}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    items = list(items)
    if callable(groups):
        keys = [groups(item) for item in items]
    else:
        keys = list(groups)
        if len(keys) != len(items):
            raise ConfigError(f"groups must give one key per item: got {len(keys)} keys for {len(items)} items")
    try:
        ordered = _sorted_groups(keys)
    except TypeError as error:
        raise ConfigError(f"group keys must be hashable: {error}") from None
    num_groups = len(ordered)
    num_val = _part_size(val_fraction, num_groups)
    num_test = _part_size(test_fraction, num_groups)
    if num_groups - num_val - num_test < 1:
        raise ConfigError(f"too few groups to split: {num_groups} group(s) cannot give {num_val} to validation, "
                          f"{num_test} to test and at least one to training")
    order = np.random.default_rng(int(seed)).permutation(num_groups)
    shuffled = [ordered[i] for i in order]
    part_of = {}
    for k, key in enumerate(shuffled):
        part_of[key] = 1 if k < num_val else 2 if k < num_val + num_test else 0
    parts = ([], [], [])
    for item, key in zip(items, keys):
        parts[part_of[key]].append(item)
    return Split(*parts)


def _patient_of(record):
    for attribute in ("patient", "case"):
        if hasattr(record, attribute):
            return getattr(record, attribute)
    raise ConfigError(f"split_by_patient needs records with a 'patient' or 'case' attribute, "
                      f"got {type(record).__name__}; use split_by_group with a key function")


def split_by_patient(records, val_fraction=0.2, test_fraction=0.0, seed=0):
    """Split dataset records by patient: `split_by_group` keyed on ``record.patient`` or ``record.case``.

    Args:
        records: records with a ``patient`` (preferred) or ``case`` attribute.
        val_fraction: share of the patients for validation.
        test_fraction: share of the patients for test.
        seed: integer seed of the shuffle.

    Returns:
        A `Split` of three lists of records.

    Example:
        >>> from tfseg.datasets.sunnybrook import SunnybrookRecord
        >>> recs = [SunnybrookRecord(f"SC-N-{c}", "i.dcm", "c.txt", n, "icontour")
        ...         for c in range(1, 6) for n in range(2)]
        >>> split = split_by_patient(recs, val_fraction=0.2)
        >>> len(split.val), len({r.case for r in split.val})
        (2, 1)
    """
    return split_by_group(records, _patient_of, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)


class DataSplit(NamedTuple):
    """A workflow's training and held-out records, the problems met finding them, and whether they are synthetic.

    Example:
        >>> DataSplit(train=["a"], val=["b"], problems=[], synthetic=True).synthetic
        True
    """

    train: list
    val: list
    problems: Any
    synthetic: bool
