"""From chunk-level predictions to one prediction per patient: the mean of a patient's chunk probabilities.

Example:
    >>> mean_by_group([0.2, 0.4, 0.9], ["00001", "00001", "00002"])
    {'00001': 0.30000000000000004, '00002': 0.9}
"""
import numpy as np

from tfseg.errors import ConfigError

__all__ = ["mean_by_group"]


def mean_by_group(values, groups):
    """The mean of `values` per group, groups in order of first appearance.

    Args:
        values: one number per chunk (e.g. chunk probabilities).
        groups: one hashable group id per chunk (e.g. the patient id).

    Returns:
        A dict `{group: mean}` of floats.

    Raises:
        ConfigError: `values` and `groups` differ in length.

    Example:
        >>> mean_by_group([1.0, 0.0, 0.5], ["a", "b", "a"])
        {'a': 0.75, 'b': 0.0}
    """
    values = np.asarray(values, np.float64).ravel()
    groups = list(groups)
    if len(groups) != values.size:
        raise ConfigError(f"mean_by_group: {values.size} values but {len(groups)} group ids")
    sums, counts = {}, {}
    for value, group in zip(values, groups):
        sums[group] = sums.get(group, 0.0) + float(value)
        counts[group] = counts.get(group, 0) + 1
    return {group: sums[group] / counts[group] for group in sums}
