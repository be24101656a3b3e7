"""SegResNet (Myronenko 2018, arXiv 1810.11654): a residual encoder-decoder, with an optional VAE branch.

The BraTS 2018 winner. The encoder has `len(blocks_down)` levels of pre-activation residual
blocks (GroupNorm(8) - ReLU - conv3 - GroupNorm - ReLU - conv3, plus the identity), doubling
the filters and halving the size at each level with a stride-2 convolution. The decoder goes back
level by level: a 1x1 convolution halves the filters, linear (bi/trilinear) upsampling doubles
the size, the encoder's output at that level is added, and `blocks_up[i]` residual blocks
follow. A GroupNorm - ReLU - 1x1 convolution head (as in MONAI's `SegResNet`) gives one sigmoid
channel per region (BraTS: whole tumor, tumor core, enhancing tumor).

`segresnet_vae` adds the paper's variational-autoencoder branch for training: from the encoder's
end it reduces to a `2 * vae_latent` vector (means and log-variances), samples `z` and decodes it
back to the input image. The branch regularizes the shared encoder; its loss
(`0.1 * L2 + 0.1 * KL`, see `tfseg.losses.vae_regularization`) is added by the model itself (a
model loss, as MONAI's `SegResNetVAE` computes it in its forward pass), so a trainer only needs a
Dice loss on the `probabilities` output. `inference_model` cuts the trained network down to the
segmentation path, sharing its weights, for evaluation and export.

Both builders give the shared layers the same names, and build them in the same order.

Convolutions are bias-free where a normalization follows or a residual sum (as in MONAI); the
heads have biases. Shapes are channels last.

Example:
    >>> model = segresnet((32, 32, 32, 4), num_classes=3, init_filters=8)
    >>> model.output_shape
    (None, 32, 32, 32, 3)
"""
import math
import numbers

import keras
from keras import layers, ops

from tfseg.errors import ConfigError
from tfseg.losses import VAE_KL_WEIGHT, VAE_L2_WEIGHT, vae_regularization
from tfseg.models.blocks import OUTPUT_ACTIVATIONS, check_input_shape, check_spatial_dims, conv, upsample
from tfseg.models.blocks import norm as norm_layer
from tfseg.models.registry import register_model

_SPATIAL_DROPOUT = {2: layers.SpatialDropout2D, 3: layers.SpatialDropout3D}


# --------------------------------------------------------------------------------------------
# Custom layers of the VAE branch.
# --------------------------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="tfseg")
class VAESampling(layers.Layer):
    """Draw `z = mean + std * eps`, `eps ~ N(0, 1)`, from a `(B, 2 * latent)` vector of means and log-variances.

    The first half of the input are the means, the second half `log(std^2)`. In training the
    sample is random (from the layer's `SeedGenerator`); otherwise `z = mean`, so evaluation is
    deterministic.

    Args:
        seed: seed of the noise (None: drawn from Keras' global seed).

    Example:
        >>> import numpy as np
        >>> stats = np.array([[1.0, 2.0, 0.0, 0.0]], "float32")
        >>> VAESampling()(stats).numpy().tolist()
        [[1.0, 2.0]]
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, stats, training=False):
        mean, log_var = split_latent(stats)
        if not training:
            return mean
        eps = keras.random.normal(ops.shape(mean), dtype=mean.dtype, seed=self.seed_generator)
        return mean + ops.exp(0.5 * log_var) * eps

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], None if input_shape[-1] is None else input_shape[-1] // 2)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="tfseg")
class VAERegularization(layers.Layer):
    """Add the VAE loss `l2_weight * L2 + kl_weight * KL` to the model's losses; return the reconstruction.

    Called on `[image, reconstruction, stats]` (stats: the `(B, 2 * latent)` means and
    log-variances); the batch mean of `tfseg.losses.vae_regularization` is added with
    `add_loss`, in float32, and the reconstruction passes through unchanged.

    Args:
        l2_weight: weight of the reconstruction term (0.1 in the paper).
        kl_weight: weight of the KL term (0.1 in the paper).
        num_voxels: N of the KL term, the number of image voxels in the paper.

    Example:
        >>> import numpy as np
        >>> layer = VAERegularization(num_voxels=4)
        >>> image = np.zeros((1, 2, 2, 1), "float32"); stats = np.zeros((1, 4), "float32")
        >>> out = layer([image, image + 1, stats])
        >>> round(float(layer.losses[0]), 4)   # 0.1 * 1 + 0.1 * 0
        0.1
    """

    def __init__(self, l2_weight=VAE_L2_WEIGHT, kl_weight=VAE_KL_WEIGHT, num_voxels=None, **kwargs):
        super().__init__(**kwargs)
        if l2_weight < 0 or kl_weight < 0:
            raise ConfigError(f"l2_weight and kl_weight must be >= 0, got {l2_weight!r} and {kl_weight!r}")
        self.l2_weight = float(l2_weight)
        self.kl_weight = float(kl_weight)
        self.num_voxels = None if num_voxels is None else int(num_voxels)

    def call(self, inputs):
        image, reconstruction, stats = inputs
        mean, log_var = split_latent(ops.cast(stats, "float32"))
        loss = vae_regularization(ops.cast(image, "float32"), ops.cast(reconstruction, "float32"), mean, log_var,
                                  self.l2_weight, self.kl_weight, self.num_voxels)
        self.add_loss(ops.mean(loss))
        return reconstruction

    def compute_output_shape(self, input_shapes):
        return input_shapes[1]

    def get_config(self):
        return {**super().get_config(), "l2_weight": self.l2_weight, "kl_weight": self.kl_weight,
                "num_voxels": self.num_voxels}


def split_latent(stats):
    """Split `(B, 2 * latent)` into the means `(B, latent)` and the log-variances `(B, latent)`."""
    latent = stats.shape[-1] // 2
    return stats[..., :latent], stats[..., latent:]


# --------------------------------------------------------------------------------------------
# Building blocks.
# --------------------------------------------------------------------------------------------

def residual_block(x, filters, spatial_dims, norm_kind, name):
    """Pre-activation residual block: norm-ReLU-conv3 twice, plus the identity (Myronenko's "green block")."""
    y = norm_layer(norm_kind, name=f"{name}_norm1")(x)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = conv(spatial_dims, filters, 3, use_bias=False, name=f"{name}_conv1")(y)
    y = norm_layer(norm_kind, name=f"{name}_norm2")(y)
    y = layers.ReLU(name=f"{name}_relu2")(y)
    y = conv(spatial_dims, filters, 3, use_bias=False, name=f"{name}_conv2")(y)
    return layers.Add(name=f"{name}_add")([x, y])


def _check_blocks(model_name, blocks_down, blocks_up):
    def counts(value, what, minimum):
        try:
            items = tuple(value)
        except TypeError:
            raise ConfigError(f"{model_name}: {what} must be a list of block counts, got {value!r}") from None
        if any(not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < minimum for n in items):
            raise ConfigError(f"{model_name}: {what} must hold integers >= {minimum}, got {value!r}")
        return tuple(int(n) for n in items)

    blocks_down = counts(blocks_down, "blocks_down", 1)
    blocks_up = counts(blocks_up, "blocks_up", 0)
    if not blocks_down:
        raise ConfigError(f"{model_name}: blocks_down needs at least one level")
    if len(blocks_up) != len(blocks_down) - 1:
        raise ConfigError(f"{model_name}: blocks_up must have one entry per decoder level, len(blocks_down) - 1 = "
                          f"{len(blocks_down) - 1}, got {blocks_up!r} for blocks_down {blocks_down!r}")
    return blocks_down, blocks_up


def _check_arguments(model_name, num_classes, init_filters, norm_kind, dropout, output_activation):
    for what, value in (("num_classes", num_classes), ("init_filters", init_filters)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{model_name}: {what} must be a positive integer, got {value!r}")
    if norm_kind == "group" and init_filters % 8:
        raise ConfigError(f"{model_name}: GroupNorm uses 8 groups, so init_filters must be a multiple of 8, "
                          f"got {init_filters}")
    if dropout is not None and (not isinstance(dropout, numbers.Real) or isinstance(dropout, bool)
                                or not 0 <= dropout < 1):
        raise ConfigError(f"{model_name}: dropout must be in [0, 1) or None, got {dropout!r}")
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ConfigError(f"{model_name}: output_activation must be 'sigmoid', 'softmax' or None (logits), "
                          f"got {output_activation!r}")


def prior_bias(prior_probability):
    """Head bias making every sigmoid start at `prior_probability` (Lin et al. 2017, focal loss); None: zeros."""
    if prior_probability is None:
        return "zeros"
    if not 0.0 < prior_probability < 1.0:
        raise ConfigError(f"prior_probability must be in (0, 1) or None, got {prior_probability!r}")
    return keras.initializers.Constant(math.log(prior_probability / (1.0 - prior_probability)))


def _segmentation_graph(inputs, num_classes, spatial_dims, init_filters, blocks_down, blocks_up, norm_kind,
                        dropout, output_activation, prior_probability=None):
    """The SegResNet layers on `inputs`; returns `(probabilities, encoder_end)`."""
    x = conv(spatial_dims, init_filters, 3, use_bias=False, name="stem_conv")(inputs)
    if dropout:
        x = _SPATIAL_DROPOUT[spatial_dims](dropout, name="stem_dropout")(x)
    skips = []
    for level, n_blocks in enumerate(blocks_down):
        filters = init_filters * 2**level
        if level:
            x = conv(spatial_dims, filters, 3, strides=2, use_bias=False, name=f"enc{level}_down")(x)
        for block in range(n_blocks):
            x = residual_block(x, filters, spatial_dims, norm_kind, name=f"enc{level}_block{block}")
        skips.append(x)
    encoder_end = x
    for level in reversed(range(len(blocks_up))):
        filters = init_filters * 2**level
        x = conv(spatial_dims, filters, 1, use_bias=False, name=f"dec{level}_reduce")(x)
        x = upsample(spatial_dims, 2, mode="linear", name=f"dec{level}_up")(x)
        x = layers.Add(name=f"dec{level}_skip")([x, skips[level]])
        for block in range(blocks_up[level]):
            x = residual_block(x, filters, spatial_dims, norm_kind, name=f"dec{level}_block{block}")
    x = norm_layer(norm_kind, name="head_norm")(x)
    x = layers.ReLU(name="head_relu")(x)
    x = conv(spatial_dims, num_classes, 1, bias_initializer=prior_bias(prior_probability), name="head_conv")(x)
    # float32 output (also under mixed precision), named for losses and metrics.
    probabilities = layers.Activation(output_activation or "linear", dtype="float32", name="probabilities")(x)
    return probabilities, encoder_end


# --------------------------------------------------------------------------------------------
# Builders.
# --------------------------------------------------------------------------------------------

@register_model("segresnet")
def segresnet(input_shape=(None, None, None, 4), num_classes=3, spatial_dims=3, init_filters=32,
              blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1), norm="group", dropout=0.2,
              output_activation="sigmoid", prior_probability=None, name="segresnet"):
    """SegResNet, the segmentation network of Myronenko 2018, in 2D or 3D.

    With the defaults and 4 input channels it has the architecture of the paper (32 initial
    filters, encoder blocks 1-2-2-4, decoder blocks 1-1-1, GroupNorm(8), spatial dropout 0.2 after
    the first convolution, three sigmoid outputs).

    Args:
        input_shape: channels last, `(D, H, W, C)` for 3D or `(H, W, C)` for 2D; spatial sizes
            may be None (any multiple of `2**(len(blocks_down) - 1)` at run time).
        num_classes: output channels (3 for the BraTS regions WT, TC, ET).
        spatial_dims: 2 or 3.
        init_filters: filters of the first level, doubled at each level (a multiple of 8 with
            group norm).
        blocks_down: residual blocks per encoder level.
        blocks_up: residual blocks per decoder level, `len(blocks_down) - 1` entries, listed from
            the finest level (as MONAI lists them: `blocks_up[0]` runs at full resolution).
        norm: "group" (8 groups), "batch", "instance", "layer" or "none".
        dropout: spatial dropout rate after the first convolution (0 or None: none).
        output_activation: "sigmoid", "softmax" or None (logits).
        prior_probability: for sigmoid outputs, start every output at this probability (e.g. 0.01
            for small tumours) instead of 0.5: the head's bias is set to its log-odds, so training
            does not spend its first hundreds of steps pushing the background down.
        name: the model's name.

    Returns:
        A functional `keras.Model` from `image` to the output named `probabilities`, of the input's
        spatial size with `num_classes` channels.

    Raises:
        ConfigError (a ValueError): a bad argument or input shape; the message names it and the rule.

    Example:
        >>> model = segresnet((None, None, 2), num_classes=1, spatial_dims=2, init_filters=8,
        ...                   blocks_down=(1, 1, 1), blocks_up=(1, 1))
        >>> model.output_shape
        (None, None, None, 1)
    """
    check_spatial_dims(spatial_dims)
    blocks_down, blocks_up = _check_blocks(name, blocks_down, blocks_up)
    _check_arguments(name, num_classes, init_filters, norm, dropout, output_activation)
    input_shape = check_input_shape(input_shape, spatial_dims, 2 ** (len(blocks_down) - 1), name)
    inputs = keras.Input(input_shape, name="image")
    probabilities, _ = _segmentation_graph(inputs, num_classes, spatial_dims, init_filters, blocks_down, blocks_up,
                                           norm, dropout, output_activation, prior_probability)
    return keras.Model(inputs, probabilities, name=name)


@register_model("segresnet_vae")
def segresnet_vae(input_shape=(160, 192, 128, 4), num_classes=3, spatial_dims=3, init_filters=32,
                  blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1), norm="group", dropout=0.2,
                  output_activation="sigmoid", vae_latent=128, vae_filters=16, l2_weight=VAE_L2_WEIGHT,
                  kl_weight=VAE_KL_WEIGHT, seed=None, prior_probability=None, name="segresnet_vae"):
    """SegResNet with Myronenko's variational-autoencoder branch: the training model of the paper.

    The VAE branch starts at the encoder's end: GroupNorm - ReLU - stride-2 conv3 to
    `vae_filters` channels, flatten, a dense layer to `2 * vae_latent` values (means and
    log-variances; the paper's 256 = 2 x 128), a sample `z` (`VAESampling`), then a dense layer
    and ReLU back to `vae_filters` channels at half the encoder-end size, a 1x1 conv to the
    encoder-end filters, upsampling, and per decoder level a 1x1 conv halving the filters,
    upsampling and `blocks_up` residual blocks (no skips), and a 1x1 conv to the input channels.
    `VAERegularization` adds `l2_weight * L2 + kl_weight * KL` to `model.losses` (N of the KL
    term: the number of input voxels, as in the paper).

    Args:
        input_shape: a fixed channels-last shape (the dense layers need it); every spatial size a
            multiple of `2**len(blocks_down)` (the paper's 160x192x128 crop for 4 levels).
        num_classes, spatial_dims, init_filters, blocks_down, blocks_up, norm, dropout, output_activation:
            as in `segresnet`; the segmentation path is the same network with the same layer names.
        vae_latent: latent dimensions (128 in the paper).
        vae_filters: channels of the VAE's smallest feature map (16 in the paper).
        l2_weight: weight of the reconstruction term (0.1).
        kl_weight: weight of the KL term (0.1).
        seed: seed of the sampling noise.
        prior_probability: initial output probability, as in `segresnet`.
        name: the model's name.

    Returns:
        A functional `keras.Model` from `image` to `{"probabilities": ..., "reconstruction": ...}`
        (output names `probabilities` and `reconstruction`), whose `losses` hold the VAE term after
        each call. Train it with `DiceLoss(mode="sigmoid")` on `probabilities`, e.g.
        `Trainer(model, {"probabilities": DiceLoss(mode="sigmoid")}, optimizer)` on batches
        `(image, {"probabilities": regions})`; deploy `inference_model(model)`.

    Raises:
        ConfigError (a ValueError): a bad argument, or an input shape that is not fixed or not
            divisible as required.

    Example:
        >>> model = segresnet_vae((16, 16, 16, 2), num_classes=3, init_filters=8, blocks_down=(1, 1, 1),
        ...                       blocks_up=(1, 1), vae_latent=8, vae_filters=8)
        >>> model.output_names
        ['probabilities', 'reconstruction']
        >>> model.output_shape
        [(None, 16, 16, 16, 3), (None, 16, 16, 16, 2)]
    """
    check_spatial_dims(spatial_dims)
    blocks_down, blocks_up = _check_blocks(name, blocks_down, blocks_up)
    _check_arguments(name, num_classes, init_filters, norm, dropout, output_activation)
    for what, value in (("vae_latent", vae_latent), ("vae_filters", vae_filters)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name}: {what} must be a positive integer, got {value!r}")
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else input_shape
    if isinstance(shape, tuple) and any(size is None for size in shape):
        raise ConfigError(f"{name}: the VAE branch needs a fixed input_shape (its dense layers depend on the "
                          f"size), got {shape}; give every size, e.g. {(160, 192, 128, 4)[-spatial_dims - 1:]}, "
                          f"and use inference_model(model, input_shape=...) for other sizes at inference")
    divisor = 2 ** len(blocks_down)
    input_shape = check_input_shape(input_shape, spatial_dims, divisor, name)
    *spatial, channels = input_shape

    inputs = keras.Input(input_shape, name="image")
    probabilities, encoder_end = _segmentation_graph(inputs, num_classes, spatial_dims, init_filters, blocks_down,
                                                     blocks_up, norm, dropout, output_activation, prior_probability)
    top_filters = init_filters * 2 ** (len(blocks_down) - 1)
    small = tuple(size // divisor for size in spatial)

    # VD: reduce to the latent distribution.
    v = norm_layer(norm, name="vae_down_norm")(encoder_end)
    v = layers.ReLU(name="vae_down_relu")(v)
    v = conv(spatial_dims, vae_filters, 3, strides=2, name="vae_down_conv")(v)
    v = layers.Flatten(name="vae_flatten")(v)
    stats = layers.Dense(2 * vae_latent, name="vae_stats")(v)
    z = VAESampling(seed=seed, name="vae_sample")(stats)
    # VU: back to the encoder-end feature map.
    v = layers.Dense(vae_filters * math.prod(small), name="vae_up_dense")(z)
    v = layers.ReLU(name="vae_up_relu")(v)
    v = layers.Reshape((*small, vae_filters), name="vae_up_reshape")(v)
    v = conv(spatial_dims, top_filters, 1, name="vae_up_conv")(v)
    v = upsample(spatial_dims, 2, mode="linear", name="vae_up")(v)
    # VUp / VBlock per level, without skips.
    for level in reversed(range(len(blocks_up))):
        filters = init_filters * 2**level
        v = conv(spatial_dims, filters, 1, use_bias=False, name=f"vae_dec{level}_reduce")(v)
        v = upsample(spatial_dims, 2, mode="linear", name=f"vae_dec{level}_up")(v)
        for block in range(blocks_up[level]):
            v = residual_block(v, filters, spatial_dims, norm, name=f"vae_dec{level}_block{block}")
    v = conv(spatial_dims, channels, 1, name="vae_end_conv")(v)
    reconstruction = VAERegularization(l2_weight, kl_weight, num_voxels=math.prod(spatial), dtype="float32",
                                       name="reconstruction")([inputs, v, stats])
    return keras.Model(inputs, {"probabilities": probabilities, "reconstruction": reconstruction}, name=name)


def inference_model(training_model, input_shape=None, name=None):
    """The segmentation path of a (SegResNet-VAE) training model, sharing its weights.

    Args:
        training_model: a functional model with an output layer named `probabilities` (e.g.
            from `segresnet_vae`, or loaded from its `.keras` file).
        input_shape: None keeps the training model's input shape; a shape such as
            `(None, None, None, 4)` builds the same layers on a new input of that shape (the
            segmentation path is fully convolutional), e.g. for sliding-window or whole-volume
            inference.
        name: the new model's name; default `<training name>_inference`.

    Returns:
        A functional `keras.Model` from `image` to `probabilities` whose layers are the training
        model's own (the same weights, no VAE layers and no VAE compute).

    Raises:
        ConfigError: the model has no `probabilities` layer, or `input_shape` does not fit.

    Example:
        >>> train = segresnet_vae((16, 16, 4), spatial_dims=2, init_filters=8, blocks_down=(1, 1),
        ...                       blocks_up=(1,), vae_latent=4, vae_filters=8)
        >>> inference_model(train, input_shape=(None, None, 4)).output_shape
        (None, None, None, 3)
    """
    try:
        head = training_model.get_layer("probabilities")
    except ValueError:
        raise ConfigError(f"model {training_model.name!r} has no layer named 'probabilities'; inference_model "
                          "needs a SegResNet(-VAE) model") from None
    name = name or f"{training_model.name}_inference"
    image = training_model.inputs[0]
    path = keras.Model(image, head.output, name=name)
    if input_shape is None:
        return path
    spatial_dims = len(image.shape) - 2
    input_shape = check_input_shape(input_shape, spatial_dims, 1, name)
    if input_shape[-1] != image.shape[-1]:
        raise ConfigError(f"{name}: input_shape {input_shape} must keep the {image.shape[-1]} input channels of "
                          f"{training_model.name!r}")
    new_input = keras.Input(input_shape, name="image")
    # Re-run the same layers on the new input: shares every weight, builds nothing new.
    return keras.models.clone_model(path, input_tensors=new_input, clone_function=lambda layer: layer)
