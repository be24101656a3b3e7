"""MRI artifacts for 2D images (Gaussian noise, bias field), as TF ops for tf.data, after TorchIO.

Random forms draw their parameters from a stateless `seed` (int tensor `(2,)`) and call the
deterministic form, so an augmentation is reproducible from its seed.

Where the artifacts apply: every function takes an optional `mask` (`(H, W)` booleans). With a
mask, only the pixels inside it change and the others keep their value exactly — pass the brain
mask (where the unnormalized scan was non-zero) so that the background of a skull-stripped scan
keeps marking "outside the brain" (what the W3 chain, `tfseg.workflows.brats2d_augment`, does).
With `mask=None` the whole image changes, as TorchIO's `RandomNoise` and `RandomBiasField` do.

Bias field (TorchIO's `BiasField`, in 2D): `image * exp(sum_k c_k * y**i_k * x**j_k)` over all
monomials with `i + j <= order`, in the order `for i in 0..order: for j in 0..order-i`, where
`y` and `x` run linearly from -1 to 1 across the rows and columns (pixel centres). The constant
term is included, as in TorchIO, so there are `(order + 1) * (order + 2) / 2` coefficients.

Example:
    >>> import tensorflow as tf
    >>> image = tf.ones((4, 4, 1))
    >>> coefficients = [0.5] + [0.0] * 9
    >>> round(float(bias_field(image, coefficients)[0, 0, 0]), 4)
    1.6487
"""
import tensorflow as tf

from tfseg.errors import ConfigError

__all__ = ["gaussian_noise", "random_noise", "bias_field", "bias_field_map", "bias_coefficients",
           "num_bias_coefficients", "random_bias_field"]


def _apply_in(mask, new, old):
    """`new` where `mask` (H, W) is True, `old` elsewhere; everywhere when mask is None."""
    if mask is None:
        return new
    mask = tf.cast(tf.convert_to_tensor(mask), tf.bool)
    if mask.shape.rank == 3:
        mask = mask[..., 0]
    return tf.where(mask[..., None], new, old)


def gaussian_noise(image, std, seed, mask=None):
    """Add zero-mean Gaussian noise of standard deviation `std`, drawn from a stateless `seed`.

    Args:
        image: float `(H, W, C)`.
        std: noise standard deviation (float or scalar tensor), >= 0.
        seed: stateless seed, shape `(2,)`; the same seed gives the same noise.
        mask: optional `(H, W)` booleans: add noise only there (see the module notes).

    Returns:
        float32 `(H, W, C)`.

    Example:
        >>> import tensorflow as tf
        >>> out = gaussian_noise(tf.zeros((2, 2, 1)), 0.0, seed=(1, 2))
        >>> float(tf.reduce_max(tf.abs(out)))
        0.0
    """
    image = tf.cast(image, tf.float32)
    noise = tf.random.stateless_normal(tf.shape(image), seed=tf.cast(seed, tf.int64)) * tf.cast(std, tf.float32)
    return _apply_in(mask, image + noise, image)


def random_noise(image, seed, std=0.1, mask=None):
    """Gaussian noise with a standard deviation drawn uniformly in `[0, std]` (TorchIO's RandomNoise).

    Args:
        image: float `(H, W, C)`.
        seed: stateless seed, shape `(2,)`.
        std: upper bound of the standard deviation (a number), or a range `(low, high)`.
        mask: optional `(H, W)` booleans: add noise only there.

    Returns:
        float32 `(H, W, C)`.
    """
    if isinstance(std, (int, float)):
        low, high = 0.0, float(std)
    else:
        low, high = (float(v) for v in std)
    if not 0.0 <= low <= high:
        raise ConfigError(f"noise std must be >= 0 (or a range 0 <= low <= high), got {std!r}")
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    sigma = low + tf.random.stateless_uniform([], seed=seeds[0]) * (high - low)
    return gaussian_noise(image, sigma, seeds[1], mask)


def num_bias_coefficients(order):
    """Number of monomials `y**i * x**j` with `i + j <= order` (the constant one included)."""
    order = int(order)
    if order < 0:
        raise ConfigError(f"bias field order must be >= 0, got {order!r}")
    return (order + 1) * (order + 2) // 2


def _axis_coordinates(n):
    """`n` positions from -1 to 1 (0 for a single pixel)."""
    n_f = tf.cast(n, tf.float32)
    half = tf.maximum((n_f - 1.0) / 2.0, 0.5)
    return (tf.cast(tf.range(n), tf.float32) - (n_f - 1.0) / 2.0) / half


def bias_field_map(shape, coefficients, order=3):
    """The multiplicative field `exp(polynomial)`, float32 `(H, W)`, for a spatial `shape`.

    Args:
        shape: `(H, W)` (ints or an int tensor).
        coefficients: `num_bias_coefficients(order)` numbers (list or tensor), in the module's order.
        order: polynomial degree.

    Returns:
        float32 `(H, W)`, all values > 0.
    """
    count = num_bias_coefficients(order)
    coefficients = tf.cast(tf.convert_to_tensor(coefficients), tf.float32)
    if coefficients.shape.rank != 1 or (coefficients.shape[0] is not None and coefficients.shape[0] != count):
        raise ConfigError(f"a bias field of order {order} needs {count} coefficients, got shape "
                          f"{coefficients.shape.as_list()}")
    shape = tf.cast(tf.convert_to_tensor(shape), tf.int32)
    y = _axis_coordinates(shape[0])[:, None]
    x = _axis_coordinates(shape[1])[None, :]
    field = tf.zeros(shape[:2], tf.float32)
    k = 0
    for i in range(order + 1):
        for j in range(order + 1 - i):
            field += coefficients[k] * (y ** i) * (x ** j)
            k += 1
    return tf.exp(field)


def bias_field(image, coefficients, order=3, mask=None):
    """Multiply an image by a smooth bias field `exp(polynomial)` (see the module notes).

    Args:
        image: float `(H, W, C)`; the same field multiplies every channel.
        coefficients: `num_bias_coefficients(order)` numbers (10 for order 3).
        order: polynomial degree.
        mask: optional `(H, W)` booleans: apply the field only there.

    Returns:
        float32 `(H, W, C)`.
    """
    image = tf.cast(image, tf.float32)
    field = bias_field_map(tf.shape(image)[:2], coefficients, order)
    return _apply_in(mask, image * field[..., None], image)


def bias_coefficients(seed, coefficients=0.1, order=3):
    """Draw the polynomial coefficients uniformly in `±coefficients` (or in a range `(low, high)`)."""
    if isinstance(coefficients, (int, float)):
        if coefficients < 0:
            raise ConfigError(f"bias coefficients must be >= 0, got {coefficients!r}")
        low, high = -float(coefficients), float(coefficients)
    else:
        low, high = (float(v) for v in coefficients)
        if low > high:
            raise ConfigError(f"bias coefficient range must have low <= high, got {coefficients!r}")
    count = num_bias_coefficients(order)
    return tf.random.stateless_uniform([count], seed=tf.cast(seed, tf.int64), minval=low, maxval=high) \
        if low < high else tf.fill([count], low)


def random_bias_field(image, seed, coefficients=0.1, order=3, mask=None):
    """Random smooth bias field (TorchIO's RandomBiasField): coefficients uniform in `±coefficients`.

    Example:
        >>> import tensorflow as tf
        >>> out = random_bias_field(tf.ones((8, 8, 3)), seed=(3, 4))
        >>> bool(tf.reduce_all(out > 0.0)), tuple(out.shape)
        (True, (8, 8, 3))
    """
    return bias_field(image, bias_coefficients(seed, coefficients, order), order, mask)
