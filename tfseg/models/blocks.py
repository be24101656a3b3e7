"""Layer factories shared by every model family, in 2D or 3D through `spatial_dims`.

Builders take their layers from here (`conv`, `conv_transpose`, `norm`, `max_pool`, `upsample`)
so the 2D/3D choice and the normalization choice are made in one place, and check their
`input_shape` with `check_input_shape`. Channels last throughout.

Example:
    >>> import keras
    >>> x = keras.Input((32, 32, 32, 4))
    >>> y = conv(3, 8, 3, strides=2, use_bias=False)(x)
    >>> y = norm("group")(y)
    >>> upsample(3, 2, mode="linear")(y).shape
    (None, 32, 32, 32, 8)
"""
import operator

from keras import layers

from tfseg.errors import ConfigError
from tfseg.models.layers import BilinearUpsamplingInitializer, LinearUpsampling

_CONV = {2: layers.Conv2D, 3: layers.Conv3D}
_CONV_TRANSPOSE = {2: layers.Conv2DTranspose, 3: layers.Conv3DTranspose}
_MAX_POOL = {2: layers.MaxPooling2D, 3: layers.MaxPooling3D}
_UPSAMPLE = {2: layers.UpSampling2D, 3: layers.UpSampling3D}

NORM_KINDS = ("batch", "group", "instance", "layer", "none")
UPSAMPLE_MODES = ("nearest", "linear", "transpose")


def check_spatial_dims(spatial_dims):
    """Return `spatial_dims` if it is 2 or 3, else raise `ConfigError`."""
    if spatial_dims not in (2, 3):
        raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return spatial_dims


def conv(spatial_dims, filters, kernel_size=3, strides=1, *, padding="same", use_bias=True,
         activation=None, groups=1, dilation_rate=1, kernel_initializer="he_normal",
         bias_initializer="zeros", name=None):
    """A convolution of the given dimensionality, "same"-padded and He-initialized by default.

    He-normal initialization suits the ReLU networks built here: a deep plain ReLU stack (VGG)
    trained from scratch converges with it where Glorot's smaller weights shrink the signal.

    Args:
        spatial_dims: 2 or 3.
        filters: number of output channels.
        kernel_size: int or tuple.
        strides: int or tuple.
        padding: "same" or "valid".
        use_bias: whether to add a bias (pass False before a normalization layer).
        activation: a Keras activation name applied inside the layer, or None.
        groups: grouped convolution (AlexNet's two-tower layers use 2).
        dilation_rate: int or tuple.
        kernel_initializer: Keras initializer for the kernel.
        bias_initializer: Keras initializer for the bias.
        name: the layer name.

    Returns:
        A `keras.layers.Conv2D` or `Conv3D`.

    Example:
        >>> conv(2, 16, 3, activation="relu", name="block1_conv1").name
        'block1_conv1'
    """
    check_spatial_dims(spatial_dims)
    return _CONV[spatial_dims](filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias,
                               activation=activation, groups=groups, dilation_rate=dilation_rate,
                               kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                               name=name)


def conv_transpose(spatial_dims, filters, kernel_size, strides, *, use_bias=False, bilinear_init=True,
                   trainable=True, name=None):
    """A learned upsampling (transposed convolution), "same"-padded, initialized as bilinear interpolation.

    With `kernel_size = 2 * strides` and `bilinear_init=True` it starts as
    `BilinearUpsamplingInitializer` describes: channel-wise (bi/tri)linear upsampling by `strides`
    (FCN's "deconvolution" layers). The output has `strides` times the input size.

    Args:
        spatial_dims: 2 or 3.
        filters: output channels (equal to the input channels for pure interpolation).
        kernel_size: int or tuple, normally `2 * strides`.
        strides: the upsampling factor.
        use_bias: whether to add a bias (FCN uses none).
        bilinear_init: bilinear-interpolation kernel if True, He-normal if False.
        trainable: False fixes the interpolation.
        name: the layer name.

    Returns:
        A `keras.layers.Conv2DTranspose` or `Conv3DTranspose`.

    Example:
        >>> import keras
        >>> conv_transpose(2, 3, 16, 8)(keras.Input((4, 4, 3))).shape
        (None, 32, 32, 3)
    """
    check_spatial_dims(spatial_dims)
    initializer = BilinearUpsamplingInitializer() if bilinear_init else "he_normal"
    return _CONV_TRANSPOSE[spatial_dims](filters, kernel_size, strides=strides, padding="same",
                                         use_bias=use_bias, kernel_initializer=initializer,
                                         trainable=trainable, name=name)


def norm(kind, *, groups=8, epsilon=1e-5, name=None):
    """A normalization layer by name.

    Args:
        kind: "batch", "group" (`groups` groups; 8 as in Myronenko 2018), "instance" (one group
            per channel), "layer", or "none"/None (identity).
        groups: number of groups for "group".
        epsilon: the variance epsilon.
        name: the layer name.

    Returns:
        A Keras layer.

    Raises:
        ConfigError: for an unknown kind.

    Example:
        >>> type(norm("instance")).__name__
        'GroupNormalization'
    """
    if kind == "batch":
        return layers.BatchNormalization(epsilon=epsilon, name=name)
    if kind == "group":
        return layers.GroupNormalization(groups=groups, epsilon=epsilon, name=name)
    if kind == "instance":
        return layers.GroupNormalization(groups=-1, epsilon=epsilon, name=name)
    if kind == "layer":
        return layers.LayerNormalization(epsilon=epsilon, name=name)
    if kind is None or kind == "none":
        return layers.Identity(name=name)
    raise ConfigError(f"norm must be one of {', '.join(NORM_KINDS)} (or None), got {kind!r}")


def max_pool(spatial_dims, pool_size=2, strides=None, *, padding="same", name=None):
    """Max pooling of the given dimensionality ("same" padding: output size is ceil(size / stride)).

    Example:
        >>> import keras
        >>> max_pool(2, 3, 2)(keras.Input((64, 64, 1))).shape
        (None, 32, 32, 1)
    """
    check_spatial_dims(spatial_dims)
    return _MAX_POOL[spatial_dims](pool_size, strides=strides, padding=padding, name=name)


def upsample(spatial_dims, factor=2, *, mode="nearest", filters=None, name=None):
    """An upsampling layer by an integer `factor`.

    Args:
        spatial_dims: 2 or 3.
        factor: the integer upsampling factor on every spatial axis.
        mode: "nearest" (repeat), "linear" (fixed bilinear/trilinear, half-pixel centres) or
            "transpose" (a learned `conv_transpose` with kernel `2 * factor`, bilinear-initialized).
        filters: output channels, required for "transpose".
        name: the layer name.

    Returns:
        A Keras layer.

    Raises:
        ConfigError: for an unknown mode, or "transpose" without `filters`.

    Example:
        >>> import keras
        >>> upsample(2, 4, mode="transpose", filters=2)(keras.Input((8, 8, 2))).shape
        (None, 32, 32, 2)
    """
    check_spatial_dims(spatial_dims)
    if mode == "nearest":
        return _UPSAMPLE[spatial_dims](factor, name=name)
    if mode == "linear":
        if spatial_dims == 2:
            return layers.UpSampling2D(factor, interpolation="bilinear", name=name)
        return LinearUpsampling(factor, name=name)
    if mode == "transpose":
        if filters is None:
            raise ConfigError("upsample(mode='transpose') needs the number of output filters")
        return conv_transpose(spatial_dims, filters, 2 * factor, factor, name=name)
    raise ConfigError(f"upsample mode must be one of {', '.join(UPSAMPLE_MODES)}, got {mode!r}")


def scaled_filters(base, width, divisor=1):
    """`base * width` rounded to a positive multiple of `divisor` (for narrow, CPU-sized variants).

    Example:
        >>> scaled_filters(64, 0.125), scaled_filters(96, 0.125, divisor=2), scaled_filters(64, 0.001)
        (8, 12, 1)
    """
    return max(divisor, int(round(base * width / divisor)) * divisor)


def check_input_shape(input_shape, spatial_dims, divisor, model_name):
    """Validate a channels-last `input_shape` and return it as a tuple.

    Args:
        input_shape: `(H, W, C)` for 2D or `(D, H, W, C)` for 3D; spatial sizes may be None
            (any size at run time), the channel count must be a positive int.
        spatial_dims: 2 or 3.
        divisor: every known spatial size must be a multiple of it (the model's total stride).
        model_name: named in the error message.

    Returns:
        The shape as a tuple.

    Raises:
        ConfigError (a ValueError): naming the bad size and the rule.

    Example:
        >>> check_input_shape([64, None, 1], 2, 32, "fcn8s")
        (64, None, 1)
    """
    check_spatial_dims(spatial_dims)
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise ConfigError(f"{model_name}: input_shape must be a tuple such as (256, 256, 1), got {input_shape!r}") from None
    if len(shape) != spatial_dims + 1:
        raise ConfigError(f"{model_name}: input_shape {shape} must have {spatial_dims} spatial sizes plus channels "
                          f"(channels last), e.g. {(256,) * spatial_dims + (1,)}")
    *spatial, channels = shape
    if not _is_positive_int(channels):
        raise ConfigError(f"{model_name}: the channel count (last entry of input_shape {shape}) must be a positive "
                          f"integer, got {channels!r}")
    for size in spatial:
        if size is None:
            continue
        if not _is_positive_int(size):
            raise ConfigError(f"{model_name}: input_shape {shape} has spatial size {size!r}; sizes must be positive "
                              f"integers or None")
        if size % divisor:
            raise ConfigError(f"{model_name}: input size {size} in input_shape {shape} is not divisible by {divisor}; "
                              f"every spatial size must be a multiple of {divisor} (the model's total stride), "
                              f"e.g. {max(divisor, size // divisor * divisor)} or {(size // divisor + 1) * divisor}")
    return tuple(None if s is None else operator.index(s) for s in spatial) + (operator.index(channels),)


def _is_positive_int(value):
    if isinstance(value, bool):
        return False
    try:
        return operator.index(value) > 0
    except TypeError:
        return False
