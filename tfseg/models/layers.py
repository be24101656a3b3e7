"""Custom Keras layers and initializers shared by the model families (keras.ops only, registered).

- `LocalResponseNormalization`: Caffe's across-channel LRN, as in AlexNet.
- `BilinearUpsamplingInitializer`: the FCN kernel that makes a transposed convolution start as
  bilinear (2D) or trilinear (3D) interpolation of each channel.
- `LinearUpsampling`: fixed (bi/tri)linear upsampling by integer factors in any number of spatial
  dimensions, the same values as `tf.image.resize(..., "bilinear")` (half-pixel centres) in 2D.
- `Scale`: multiplication by a fixed constant (the skip scaling of the "at-once" FCN-8s).

Every class is registered under the "tfseg" package, so `.keras` files that use them load with
`keras.saving.load_model` once `tfseg.models` is imported.

Example:
    >>> import numpy as np
    >>> lrn = LocalResponseNormalization()
    >>> tuple(lrn(np.ones((1, 2, 2, 8), "float32")).shape)
    (1, 2, 2, 8)
"""
import keras
import numpy as np
from keras import layers, ops


@keras.saving.register_keras_serializable(package="tfseg")
class LocalResponseNormalization(layers.Layer):
    """Across-channel local response normalization, in Caffe's convention (AlexNet's LRN).

    For channel `i`, with `n = 2 * depth_radius + 1` channels in the window (Caffe's `local_size`),

        y_i = x_i / (bias + alpha / n * sum_{j = i - depth_radius}^{i + depth_radius} x_j**2) ** beta

    where channels outside `[0, C)` count as zero. This is Caffe's convention: `alpha` is divided by
    the window size. `tf.nn.local_response_normalization` does not divide, so Caffe's
    `alpha=1e-4, local_size=5` equals TensorFlow's `alpha=2e-5, depth_radius=2`. The sum is
    computed in float32 whatever the compute dtype, so mixed precision cannot overflow it.

    Args:
        depth_radius: half-width of the channel window (Caffe `local_size = 2 * depth_radius + 1`).
        bias: the additive constant `k` (Caffe `k`, default 1).
        alpha: the scale, divided by the window size as in Caffe.
        beta: the exponent.

    Example:
        >>> import numpy as np
        >>> x = np.zeros((1, 1, 1, 5), "float32"); x[..., 2] = 10.0
        >>> y = LocalResponseNormalization(alpha=0.5, beta=1.0)(x)
        >>> round(float(y[0, 0, 0, 2]), 4)  # 10 / (1 + 0.5 / 5 * 100)
        0.9091
    """

    def __init__(self, depth_radius=2, bias=1.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        if int(depth_radius) != depth_radius or depth_radius < 0:
            raise ValueError(f"depth_radius must be a non-negative integer, got {depth_radius!r}")
        self.depth_radius = int(depth_radius)
        self.bias = float(bias)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def call(self, x):
        dtype = x.dtype
        x32 = ops.cast(x, "float32")
        squares = ops.square(x32)
        r = self.depth_radius
        channels = squares.shape[-1]
        if r and channels is not None:
            rank = len(squares.shape)
            padded = ops.pad(squares, [[0, 0]] * (rank - 1) + [[r, r]])
            window = padded[..., 0:channels]
            for offset in range(1, 2 * r + 1):
                window = window + padded[..., offset:offset + channels]
        elif r:
            raise ValueError("LocalResponseNormalization needs a known number of channels")
        else:
            window = squares
        scale = ops.power(self.bias + (self.alpha / (2 * r + 1)) * window, self.beta)
        return ops.cast(x32 / scale, dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "depth_radius": self.depth_radius, "bias": self.bias,
                "alpha": self.alpha, "beta": self.beta}


@keras.saving.register_keras_serializable(package="tfseg")
class Scale(layers.Layer):
    """Multiply by a fixed constant (no weights), e.g. the 0.01 / 0.0001 skip scaling of FCN-8s.

    Args:
        factor: the constant.

    Example:
        >>> import numpy as np
        >>> round(float(Scale(0.01)(np.full((1, 1), 3.0, "float32"))[0, 0]), 6)
        0.03
    """

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = float(factor)

    def call(self, x):
        return ops.multiply(x, ops.cast(self.factor, x.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def bilinear_kernel_1d(kernel_size):
    """The 1D FCN interpolation filter of length `kernel_size` (Long et al.'s `upsample_filt`).

    Args:
        kernel_size: the filter length, normally `2 * factor` for upsampling by `factor`.

    Returns:
        A float64 numpy array of length `kernel_size`.

    Example:
        >>> bilinear_kernel_1d(4).tolist()
        [0.25, 0.75, 0.75, 0.25]
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    return 1.0 - np.abs(np.arange(kernel_size) - center) / factor


@keras.saving.register_keras_serializable(package="tfseg")
class BilinearUpsamplingInitializer(keras.initializers.Initializer):
    """Kernel initializer that makes a transposed convolution interpolate each channel (bi/trilinearly).

    For a `ConvNDTranspose` kernel of shape `(*kernel_size, out_channels, in_channels)` it puts the
    separable FCN interpolation filter (`bilinear_kernel_1d` along each spatial axis) on the
    diagonal `[..., c, c]` and zeros elsewhere, so channel `c` of the output is channel `c` of the
    input upsampled on its own. With kernel `2 * s`, stride `s` and `"same"` padding the result
    equals half-pixel-centred linear interpolation (`tf.image.resize(..., "bilinear")`) away from
    the border, as in Long et al.'s FCN (whose Caffe layers crop the same `s / 2` pixels).

    Example:
        >>> import keras
        >>> up = keras.layers.Conv2DTranspose(2, 4, strides=2, padding="same", use_bias=False,
        ...                                   kernel_initializer=BilinearUpsamplingInitializer())
        >>> tuple(up(keras.ops.ones((1, 4, 4, 2))).shape)
        (1, 8, 8, 2)
    """

    def __call__(self, shape, dtype=None):
        if len(shape) < 3:
            raise ValueError(f"BilinearUpsamplingInitializer needs a (*kernel_size, out, in) shape, got {shape}")
        spatial, out_channels, in_channels = tuple(shape[:-2]), shape[-2], shape[-1]
        filt = np.ones((), dtype="float64")
        for size in spatial:
            filt = np.multiply.outer(filt, bilinear_kernel_1d(size))
        kernel = np.zeros(tuple(shape), dtype="float64")
        for channel in range(min(out_channels, in_channels)):
            kernel[..., channel, channel] = filt
        return ops.convert_to_tensor(kernel, dtype=dtype or keras.config.floatx())

    def get_config(self):
        return {}


@keras.saving.register_keras_serializable(package="tfseg")
class LinearUpsampling(layers.Layer):
    """Fixed linear upsampling by integer factors along every spatial axis (2D bilinear, 3D trilinear).

    Half-pixel-centred with edge clamping, i.e. the values of `tf.image.resize(..., "bilinear")`
    in 2D and their separable extension to 3D (which `keras.layers.UpSampling3D` lacks).

    Args:
        size: an int factor for every spatial axis, or one int per spatial axis.

    Example:
        >>> import numpy as np
        >>> tuple(LinearUpsampling(2)(np.zeros((1, 4, 4, 4, 1), "float32")).shape)
        (1, 8, 8, 8, 1)
    """

    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        self.size = size if isinstance(size, int) else tuple(int(s) for s in size)

    def _factors(self, rank):
        spatial = rank - 2
        factors = (self.size,) * spatial if isinstance(self.size, int) else self.size
        if len(factors) != spatial or any(f < 1 for f in factors):
            raise ValueError(f"LinearUpsampling size {self.size!r} does not fit an input of rank {rank}")
        return factors

    def call(self, x):
        rank = len(x.shape)
        for axis, factor in enumerate(self._factors(rank), start=1):
            if factor > 1:
                x = _upsample_axis(x, axis, factor)
        return x

    def compute_output_shape(self, input_shape):
        factors = self._factors(len(input_shape))
        spatial = [None if n is None else n * f for n, f in zip(input_shape[1:-1], factors)]
        return (input_shape[0], *spatial, input_shape[-1])

    def get_config(self):
        size = self.size if isinstance(self.size, int) else list(self.size)
        return {**super().get_config(), "size": size}


def _upsample_axis(x, axis, factor):
    """Half-pixel linear upsampling of `x` by `factor` along `axis` (edges clamped)."""
    rank = len(x.shape)

    def take(start, stop):
        index = [slice(None)] * rank
        index[axis] = slice(start, stop)
        return x[tuple(index)]

    previous = ops.concatenate([take(0, 1), take(0, -1)], axis=axis)
    following = ops.concatenate([take(1, None), take(-1, None)], axis=axis)
    phases = []
    for r in range(factor):
        offset = (r + 0.5) / factor - 0.5  # source position of output factor*i + r, relative to i
        neighbour = following if offset >= 0 else previous
        w = abs(offset)
        phases.append(x if w == 0 else x * (1.0 - w) + neighbour * w)
    stacked = ops.stack(phases, axis=axis + 1)
    shape = ops.shape(x)
    length = shape[axis] * factor
    new_shape = [-1] + [shape[i] for i in range(1, axis)] + [length] + [shape[i] for i in range(axis + 1, rank)]
    return ops.reshape(stacked, new_shape)

