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
import numbers
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


# --------------------------------------------------------------------------------------------
# Blocks: small graphs of layers, applied to a tensor, shared by the encoder-decoder families.
# --------------------------------------------------------------------------------------------

def _uses_bias(norm_kind):
    """A convolution needs its own bias only when no normalization (which has a shift) follows it."""
    return norm_kind is None or norm_kind == "none"


def conv_norm_relu(x, filters, *, spatial_dims=2, norm_kind="batch", kernel_size=3, strides=1, name):
    """Convolution - normalization - ReLU, the U-Net decoder's unit.

    The convolution is bias-free unless `norm_kind` is "none"/None. Layers are named
    `{name}_conv`, `{name}_norm`, `{name}_relu`.

    Args:
        x: the input tensor, channels last.
        filters: output channels.
        spatial_dims: 2 or 3.
        norm_kind: a `norm` kind.
        kernel_size: int or tuple.
        strides: int or tuple.
        name: prefix of the layer names.

    Returns:
        The output tensor.

    Example:
        >>> import keras
        >>> conv_norm_relu(keras.Input((16, 16, 3)), 8, strides=2, name="unit").shape
        (None, 8, 8, 8)
    """
    x = conv(spatial_dims, filters, kernel_size, strides, use_bias=_uses_bias(norm_kind), name=f"{name}_conv")(x)
    x = norm(norm_kind, name=f"{name}_norm")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def strided_pointwise_conv(x, filters, strides, *, spatial_dims=2, use_bias=True, name):
    """A 1x1 convolution with a stride, computed as subsampling then a stride-1 1x1 convolution.

    The output equals `conv(spatial_dims, filters, 1, strides)(x)` exactly (a 1x1 kernel with
    stride s reads every s-th position), and the kernel is the same variable under the same name.
    The detour avoids TensorFlow's oneDNN CPU kernel for the gradient of a strided 1x1
    convolution, which corrupts the heap (`malloc(): corrupted top size`, segmentation faults)
    with fewer than 16 input channels at 64x64 and above (TF 2.18 and 2.21).

    Example:
        >>> import keras
        >>> strided_pointwise_conv(keras.Input((64, 64, 8)), 16, 2, name="down_shortcut").shape
        (None, 32, 32, 16)
    """
    if strides != 1 and strides != (1,) * spatial_dims:
        x = max_pool(spatial_dims, 1, strides, name=f"{name}_subsample")(x)
    return conv(spatial_dims, filters, 1, use_bias=use_bias, name=name)(x)


def residual_block_preact(x, filters, *, spatial_dims=2, norm_kind="batch", strides=1, preactivate=True, name):
    """Pre-activated residual block with a projected shortcut (He et al. 2016; ResUNet, Zhang et al. 2018).

    Residual path: norm - ReLU - conv3 (stride `strides`) - norm - ReLU - conv3. Shortcut: the
    input through a 1x1 convolution (stride `strides`) and a normalization when the stride or the
    channel count changes, else the input itself. The two are added. With `preactivate=False`
    the first norm - ReLU is left out, so the first convolution sees the raw input (ResUNet's
    first block, which reads the image).

    Args:
        x: the input tensor, channels last.
        filters: output channels.
        spatial_dims: 2 or 3.
        norm_kind: a `norm` kind.
        strides: stride of the first convolution and of the shortcut (2 halves the size).
        preactivate: whether the residual path starts with norm - ReLU.
        name: prefix of the layer names (`{name}_conv1`, `{name}_shortcut_conv`, `{name}_add`, ...).

    Returns:
        The output tensor.

    Example:
        >>> import keras
        >>> residual_block_preact(keras.Input((16, 16, 4)), 8, strides=2, name="down1").shape
        (None, 8, 8, 8)
    """
    bias = _uses_bias(norm_kind)
    y = x
    if preactivate:
        y = norm(norm_kind, name=f"{name}_norm1")(y)
        y = layers.ReLU(name=f"{name}_relu1")(y)
    y = conv(spatial_dims, filters, 3, strides, use_bias=bias, name=f"{name}_conv1")(y)
    y = norm(norm_kind, name=f"{name}_norm2")(y)
    y = layers.ReLU(name=f"{name}_relu2")(y)
    y = conv(spatial_dims, filters, 3, use_bias=bias, name=f"{name}_conv2")(y)
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = strided_pointwise_conv(x, filters, strides, spatial_dims=spatial_dims, use_bias=bias,
                                          name=f"{name}_shortcut_conv")
        shortcut = norm(norm_kind, name=f"{name}_shortcut_norm")(shortcut)
    return layers.Add(name=f"{name}_add")([shortcut, y])


def decoder_block(x, skips, filters, *, spatial_dims=2, norm_kind="batch", residual=False, name):
    """One decoder step of a U-Net: upsample 2x, concatenate the skips, then convolve.

    The convolutions are conv3 - norm - ReLU twice (U-Net, UNet++; as segmentation_models_pytorch's
    `DecoderBlock`), or, with `residual=True`, one `residual_block_preact` (ResUNet). Upsampling
    is nearest-neighbour.

    Args:
        x: the coarser tensor, channels last.
        skips: a tensor, a list of tensors (UNet++'s dense skips) or None, all at twice the
            spatial size of `x`.
        filters: output channels.
        spatial_dims: 2 or 3.
        norm_kind: a `norm` kind.
        residual: a pre-activated residual block instead of the two convolutions.
        name: prefix of the layer names (`{name}_up`, `{name}_concat`, ...).

    Returns:
        The output tensor, at twice the spatial size of `x`.

    Example:
        >>> import keras
        >>> x, skip = keras.Input((8, 8, 16)), keras.Input((16, 16, 4))
        >>> decoder_block(x, skip, 8, name="dec").shape
        (None, 16, 16, 8)
    """
    x = upsample(spatial_dims, 2, name=f"{name}_up")(x)
    if skips is not None and not isinstance(skips, (list, tuple)):
        skips = [skips]
    if skips:
        x = layers.Concatenate(name=f"{name}_concat")([x, *skips])
    if residual:
        return residual_block_preact(x, filters, spatial_dims=spatial_dims, norm_kind=norm_kind, name=f"{name}_block")
    x = conv_norm_relu(x, filters, spatial_dims=spatial_dims, norm_kind=norm_kind, name=f"{name}_unit1")
    return conv_norm_relu(x, filters, spatial_dims=spatial_dims, norm_kind=norm_kind, name=f"{name}_unit2")


OUTPUT_ACTIVATIONS = ("sigmoid", "softmax", None)


def check_head(model_name, num_classes, output_activation):
    """Check `num_classes` (a positive int) and `output_activation`; raise `ConfigError` naming the rule."""
    if not isinstance(num_classes, numbers.Integral) or isinstance(num_classes, bool) or num_classes < 1:
        raise ConfigError(f"{model_name}: num_classes must be a positive integer, got {num_classes!r}")
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ConfigError(f"{model_name}: output_activation must be 'sigmoid', 'softmax' or None (logits), "
                          f"got {output_activation!r}")
    if output_activation == "softmax" and num_classes == 1:
        raise ConfigError(f"{model_name}: a softmax over num_classes=1 is always 1; use num_classes=2 with softmax, "
                          "or output_activation='sigmoid' for one foreground channel")


def segmentation_head(x, num_classes, *, spatial_dims=2, output_activation="sigmoid", name="head"):
    """A 1x1 convolution to `num_classes` channels and the named float32 output layer.

    The output layer is named "probabilities" ("logits" when `output_activation` is None) and
    computes in float32 even under a mixed-precision policy.

    Args:
        x: the input tensor, channels last.
        num_classes: output channels.
        spatial_dims: 2 or 3.
        output_activation: "sigmoid" (per channel), "softmax" (over channels) or None (logits).
        name: the 1x1 convolution's name.

    Returns:
        The output tensor.

    Raises:
        ConfigError: for an unknown `output_activation`.

    Example:
        >>> import keras
        >>> y = segmentation_head(keras.Input((8, 8, 4)), 2, output_activation="softmax")
        >>> y.shape, y.dtype
        ((None, 8, 8, 2), 'float32')
    """
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ConfigError(f"output_activation must be 'sigmoid', 'softmax' or None (logits), got {output_activation!r}")
    x = conv(spatial_dims, num_classes, 1, name=name)(x)
    if output_activation is None:
        return layers.Activation("linear", dtype="float32", name="logits")(x)
    if output_activation == "softmax":
        return layers.Softmax(axis=-1, dtype="float32", name="probabilities")(x)
    return layers.Activation("sigmoid", dtype="float32", name="probabilities")(x)
