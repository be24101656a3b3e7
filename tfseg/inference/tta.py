"""Test-time augmentation: average predictions over mirror flips of the spatial axes.

Example:
    >>> import numpy as np
    >>> ramp = lambda x: x * np.arange(x.shape[1]).reshape(1, -1, 1, 1)    # not flip-equivariant
    >>> flip_tta(ramp, axes=(0,))(np.ones((1, 3, 2, 1)))[0, :, 0, 0].tolist()
    [1.0, 1.0, 1.0]
"""
import itertools

import numpy as np

from tfseg.errors import ConfigError


def _is_tensor(x):
    try:
        import tensorflow as tf
    except ImportError:            # pragma: no cover - tensorflow is a dependency
        return False
    return isinstance(x, (tf.Tensor, tf.Variable))


def _flip(x, axes):
    """Reverse `x` along the given array axes (numpy or TensorFlow, in kind)."""
    if not axes:
        return x
    if _is_tensor(x):
        import tensorflow as tf
        return tf.reverse(x, list(axes))
    return np.flip(x, axis=tuple(axes))


def flip_combinations(axes):
    """All subsets of `axes` (the identity first): the 2**len(axes) flips `flip_tta` averages over.

    Example:
        >>> flip_combinations((0, 1))
        [(), (0,), (1,), (0, 1)]
    """
    axes = tuple(axes)
    return [combo for k in range(len(axes) + 1) for combo in itertools.combinations(axes, k)]


def flip_tta(predict_fn, axes=None):
    """Wrap `predict_fn` so it averages its predictions over every combination of mirror flips.

    For each subset of `axes`: flip the input batch along those spatial axes, predict, flip the
    prediction back; the result is the mean of the `2**len(axes)` predictions. Works on numpy
    batches and on TensorFlow tensors (inside a `tf.function` too); the predictions are computed one
    flip at a time, so memory stays that of one `predict_fn` call.

    Args:
        predict_fn: maps a batch `(B, *spatial, C)` to `(B, *spatial, K)`.
        axes: spatial axes to flip, counted without the batch axis (0 = first spatial axis,
            e.g. `(0, 1, 2)` for D, H, W); None: every spatial axis of the batch.

    Returns:
        A function of the same signature.

    Raises:
        ConfigError: repeated axes, or an axis outside the batch's spatial axes (at call time).

    Example:
        >>> f = flip_tta(lambda x: 2 * x, axes=(0, 1))
        >>> f(np.arange(4.0).reshape(1, 2, 2, 1))[0, ..., 0].tolist()
        [[0.0, 2.0], [4.0, 6.0]]
    """
    if axes is not None:
        axes = tuple(axes)
        for a in axes:
            if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or a < 0:
                raise ConfigError(f"flip axes must be non-negative spatial axis indices, got {axes!r}")
        if len(set(axes)) != len(axes):
            raise ConfigError(f"flip axes must not repeat, got {axes!r}")

    def averaged(batch):
        rank = len(batch.shape)
        spatial = rank - 2
        use = tuple(range(spatial)) if axes is None else axes
        if any(a >= spatial for a in use):
            raise ConfigError(f"flip axes {use} must lie within the {spatial} spatial axes of a batch "
                              f"of shape {tuple(batch.shape)}")
        combos = flip_combinations(a + 1 for a in use)      # array axes: skip the batch axis
        total = None
        for combo in combos:
            pred = _flip(predict_fn(_flip(batch, combo)), combo)
            total = pred if total is None else total + pred
        return total / float(len(combos))

    return averaged
