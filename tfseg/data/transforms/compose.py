"""Composition of random transforms: apply one of several branches, chosen at random.

A *branch* is a function `(image, label, seed) -> (image, label)`; `one_of` applies one branch,
chosen at random, with a given probability (TorchIO's `OneOf`), in graph mode through
`tf.switch_case`, so it runs inside `tf.data.Dataset.map`. The BraTS-2D (W3) chain built from
it lives with its workflow, in `tfseg.workflows.brats2d_augment`.

Example:
    >>> import tensorflow as tf
    >>> halve = lambda image, label, seed: (image / 2.0, label)
    >>> double = lambda image, label, seed: (image * 2.0, label)
    >>> img, _ = one_of(tf.ones((2, 2, 1)), None, (3, 4), [halve, double], weights=[0.0, 1.0])
    >>> float(img[0, 0, 0])
    2.0
"""
import tensorflow as tf

from tfseg.errors import ConfigError

__all__ = ["one_of"]


def _branch_index(seed, count, probability, weights):
    """Index of the branch to apply, or `count` for the identity."""
    probability = float(probability)
    if not 0.0 <= probability <= 1.0:
        raise ConfigError(f"probability must be in [0, 1], got {probability!r}")
    if weights is None:
        weights = [1.0] * count
    weights = [float(w) for w in weights]
    if len(weights) != count or min(weights) < 0 or sum(weights) <= 0:
        raise ConfigError(f"weights must be {count} non-negative numbers with a positive sum, got {weights!r}")
    total = sum(weights)
    cumulative = []
    running = 0.0
    for w in weights[:-1]:
        running += w / total
        cumulative.append(running)
    draws = tf.random.stateless_uniform([2], seed=seed)
    choice = tf.reduce_sum(tf.cast(draws[1] >= tf.constant(cumulative, tf.float32), tf.int32)) \
        if cumulative else tf.constant(0, tf.int32)
    # A zero-weight branch is never chosen, even at the edge of float rounding.
    choice = _skip_zero_weight(choice, weights)
    return tf.where(draws[0] < probability, choice, count)


def _skip_zero_weight(choice, weights):
    positive = [i for i, w in enumerate(weights) if w > 0]
    if len(positive) == len(weights):
        return choice
    allowed = tf.constant([w > 0 for w in weights])
    fallback = tf.constant(positive[-1], tf.int32)
    return tf.where(tf.gather(allowed, choice), choice, fallback)


def one_of(image, label, seed, branches, probability=1.0, weights=None):
    """Apply one of `branches`, chosen with `weights`, with probability `probability`; else return the input.

    Args:
        image: `(H, W, C)` tensor.
        label: label tensor, or None (branches then get None and their label output is ignored).
        seed: stateless seed, shape `(2,)`: it decides whether and which branch runs, and a seed
            derived from it is passed to the branch.
        branches: non-empty list of functions `(image, label, seed) -> (image, label)`, each keeping
            the image's and label's shapes and dtypes.
        probability: chance that any branch runs.
        weights: relative chances of the branches (default: equal).

    Returns:
        `(image, label)`, with the input's static shapes.

    Example:
        >>> import tensorflow as tf
        >>> double = lambda image, label, seed: (image * 2.0, label)
        >>> img, _ = one_of(tf.ones((2, 2, 1)), None, (1, 2), [double], probability=1.0)
        >>> float(img[0, 0, 0])
        2.0
    """
    branches = list(branches)
    if not branches:
        raise ConfigError("one_of needs at least one branch")
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    index = _branch_index(seeds[0], len(branches), probability, weights)
    image = tf.convert_to_tensor(image)
    has_label = label is not None
    label = tf.convert_to_tensor(label) if has_label else None

    def run(branch):
        def call():
            out_image, out_label = branch(image, label, seeds[1])
            out_image = tf.ensure_shape(tf.convert_to_tensor(out_image), image.shape)
            if not has_label:
                return out_image
            return out_image, tf.ensure_shape(tf.convert_to_tensor(out_label), label.shape)
        return call

    identity = (lambda: (image, label)) if has_label else (lambda: image)
    result = tf.switch_case(index, [run(branch) for branch in branches] + [identity])
    if not has_label:
        out = result
        out.set_shape(image.shape)
        return out, None
    out_image, out_label = result
    out_image.set_shape(image.shape)
    out_label.set_shape(label.shape)
    return out_image, out_label
