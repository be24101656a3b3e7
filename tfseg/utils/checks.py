"""Argument checks shared by several modules (names from a fixed set, ...), raising ConfigError.

Example:
    >>> distinct_choices(("axial", "coronal"), ("axial", "coronal", "sagittal"), "planes")
    ('axial', 'coronal')
"""
from tfseg.errors import ConfigError


def distinct_choices(values, allowed, name):
    """`values` (one name or several) as a tuple of distinct names among `allowed`, else ConfigError.

    Example:
        >>> distinct_choices("flair", ("t1", "flair"), "channels")
        ('flair',)
    """
    if isinstance(values, str):
        values = (values,)
    values = tuple(values)
    if not values or any(v not in allowed for v in values) or len(set(values)) != len(values):
        raise ConfigError(f"{name} must be distinct names among {tuple(allowed)}, got {values!r}")
    return values
