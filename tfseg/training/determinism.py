"""Bit-identical training runs: one seed for every random source, deterministic ops, ordered tf.data.

Two runs with the same seed differ when any of these varies: Python's, NumPy's, TensorFlow's or
Keras' random state (initializers, dropout, shuffles), a TensorFlow kernel that sums in a
thread-dependent order, or a `tf.data` map that hands out elements as they finish rather than
in order. `enable_determinism(seed)` fixes all three; call it once, first, with the config's
seed, before any model or dataset is built. On CPU the runs are then bit-identical (a resumed
run too, since checkpoints hold every optimizer variable); on GPU some kernels become slower
or raise an error when they have no deterministic version.

Example:
    >>> import keras
    >>> enable_determinism(3)
    >>> a = keras.random.uniform((2,)).numpy()
    >>> enable_determinism(3)
    >>> bool((keras.random.uniform((2,)).numpy() == a).all())
    True
    >>> deterministic_options().deterministic
    True
"""
import logging

import numpy as np

from tfseg.errors import ConfigError

logger = logging.getLogger(__name__)


def deterministic_options():
    """`tf.data.Options` that keep the element order of every parallel transformation.

    Apply them to a dataset built elsewhere with `dataset.with_options(deterministic_options())`.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.deterministic = True
    return options


def enable_determinism(seed):
    """Make the rest of this process's training reproducible bit for bit from `seed`.

    Seeds Python, NumPy, TensorFlow and Keras (`keras.utils.set_random_seed`) and turns on
    TensorFlow's op determinism (`tf.config.experimental.enable_op_determinism`, which cannot be
    turned off again in the process; it also makes tf.data keep the order of parallel maps).
    tfseg's pipelines are ordered already (`deterministic=True`); for a dataset built by other
    code, apply `deterministic_options()`.

    Args:
        seed: a non-negative integer (the config's `train.seed`).

    Raises:
        ConfigError: `seed` is not a non-negative integer.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()
    logger.info("deterministic training: seed %d, op determinism on, ordered tf.data", int(seed))


def seed_run(seed, deterministic=True):
    """Seed a training run: bit-identical on CPU with `deterministic` (`enable_determinism`), else seeds only.

    What every workflow's `train` calls with its `train.seed` and `train.deterministic`.

    Example:
        >>> seed_run(3, deterministic=False)
    """
    if deterministic:
        enable_determinism(seed)
    else:
        from tfseg.training.trainer import set_seed

        set_seed(seed)
