"""U-Net and UNet++ decoders on classification encoders: ResNet18/34/50 and DenseNet121.

The encoder gives features at strides 2, 4, 8, 16 and 32. The U-Net decoder (Ronneberger et al.
2015, as segmentation_models_pytorch's `Unet`) starts from the stride-32 features and, four
times, upsamples 2x, concatenates the encoder features of that stride and applies conv3 - norm -
ReLU twice (`tfseg.models.blocks.decoder_block`); a fifth block without skip returns to the
input size and a 1x1 convolution gives the classes. UNet++ (Zhou et al. 2018) replaces the plain
skips by nested dense ones: node `X(i, j)` at level `i` (stride `2**(i + 1)`) is a decoder block
on `X(i + 1, j - 1)` with the skips `X(i, 0) ... X(i, j - 1)`, `X(i, 0)` being the encoder
features; the decoder ends at `X(0, 4)`, then the same last block and head as U-Net. All nodes of
one level have that level's decoder filters (as in the paper; segmentation_models_pytorch gives
the inner nodes the encoder's channel counts instead).

Encoders:

- "resnet50", "densenet121": `keras.applications.ResNet50` / `DenseNet121` (`include_top=False`),
  so `weights="imagenet"` loads the ImageNet weights keras.applications publishes (fetched with
  `keras.utils.get_file` into `~/.keras/models`, where a copy placed by hand is used offline).
  Skips: ResNet50 `conv1_relu`, `conv2_block3_out`, `conv3_block4_out`, `conv4_block6_out`,
  end `conv5_block3_out`; DenseNet121 `conv1_relu`, `pool2_relu`, `pool3_relu`, `pool4_relu`
  (the normalized, activated inputs of the transition layers, as segmentation_models_pytorch
  takes them), end `relu`. The ImageNet weights expect the preprocessing of
  `keras.applications.resnet50.preprocess_input` / `densenet.preprocess_input`.
- "resnet18", "resnet34": built here in the torchvision layout (7x7/2 stem, 3x3/2 max-pool, basic
  blocks 2-2-2-2 / 3-4-6-3 with 64-128-256-512 filters, batch norm with epsilon 1e-5, torch's
  explicit padding for the strided layers). Layer names follow torchvision's parameter names
  (`conv1` -> `encoder_conv1`, `layer2.0.downsample.1` -> `encoder_layer2_0_downsample_bn`), so a
  converted PyTorch checkpoint maps by name. keras.applications has no ResNet18/34, so there are
  no "imagenet" weights for them.

Every encoder layer's name starts with `ENCODER_PREFIX` ("encoder_"; the keras.applications
names get the prefix), which is how `set_encoder_trainable` finds them, also in a model loaded
back from a `.keras` file. Input channels other than 3 are accepted; with ImageNet weights the
first convolution's kernel is adapted (`tfseg.models.weights.adapt_input_kernel`: summed over
RGB for 1 channel). The `norm` argument applies to the decoder; encoders use batch norm, as
their pretrained weights do.

Fine-tuning in two stages (the W5 warm-up: encoder frozen for some epochs, then everything):

    model = unet_plus_plus(weights="imagenet", encoder_freeze=True)
    model.compile(...); model.fit(..., epochs=10)
    set_encoder_trainable(model, True)
    model.compile(...); model.fit(..., initial_epoch=10, epochs=50)   # recompile after the change

A frozen encoder's batch-norm layers run in inference mode (Keras' rule for non-trainable batch
normalization), so their ImageNet statistics are kept during the warm-up.

Example:
    >>> model = unet((64, 64, 1), num_classes=3, encoder="resnet18", decoder_filters=(32, 16, 8, 8, 4))
    >>> model.output_shape
    (None, 64, 64, 3)
"""
import collections
import logging
import numbers
import os

import keras
from keras import layers

from tfseg.errors import ConfigError, DataError
from tfseg.models import weights as weights_lib
from tfseg.models.blocks import check_input_shape, conv, decoder_block, max_pool, norm
from tfseg.models.blocks import check_head, segmentation_head
from tfseg.models.encoder import ENCODER_PREFIX, set_encoder_trainable
from tfseg.models.registry import register_model

logger = logging.getLogger(__name__)

STRIDE = 32
DECODER_DEPTH = 5

#: Basic-block counts of the torchvision ResNets built here.
RESNET_BASIC_BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
RESNET_FILTERS = (64, 128, 256, 512)

_Application = collections.namedtuple("_Application", "builder skips file url hash")
_KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications/"
#: keras.applications encoders: builder, skip layers at strides 2..32, and the notop ImageNet file
#: with the md5 keras.applications checks.
APPLICATION_ENCODERS = {
    "resnet50": _Application(
        "ResNet50", ("conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"),
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        _KERAS_WEIGHTS + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "4d473c1dd8becc155b73f8504c6f6626"),
    "densenet121": _Application(
        "DenseNet121", ("conv1_relu", "pool2_relu", "pool3_relu", "pool4_relu", "relu"),
        "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
        _KERAS_WEIGHTS + "densenet/densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "30ee3e1110167f948a6b9946edeeb738"),
}
ENCODERS = (*RESNET_BASIC_BLOCKS, *APPLICATION_ENCODERS)


# --------------------------------------------------------------------------------------------
# Argument checks shared with the other U-Net family builders.
# --------------------------------------------------------------------------------------------

def check_weights(model_name, weights):
    """Return None, "imagenet" or a path string; raise `ConfigError` for anything else."""
    if weights is None or weights == "imagenet":
        return weights
    if isinstance(weights, (str, os.PathLike)):
        return os.fspath(weights)
    raise ConfigError(f"{model_name}: weights must be None, 'imagenet' or a path to a weights file, got {weights!r}")


def check_filters(model_name, what, filters, length=None):
    """Return `filters` as a tuple of positive ints (of `length` entries if given), else raise `ConfigError`."""
    try:
        values = tuple(filters)
    except TypeError:
        raise ConfigError(f"{model_name}: {what} must be a list of filter counts, got {filters!r}") from None
    if not values or any(not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1 for v in values):
        raise ConfigError(f"{model_name}: {what} must be a non-empty list of positive integers, got {filters!r}")
    if length is not None and len(values) != length:
        raise ConfigError(f"{model_name}: {what} needs {length} entries (one per decoder block, from the coarsest), "
                          f"got {len(values)}: {filters!r}")
    return tuple(int(v) for v in values)


# --------------------------------------------------------------------------------------------
# Encoders.
# --------------------------------------------------------------------------------------------

def _torch_conv(x, filters, kernel_size, strides, name):
    """A bias-free convolution padded as torch pads it (`kernel_size // 2` on every side)."""
    if strides > 1 and kernel_size > 1:
        x = layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
        return conv(2, filters, kernel_size, strides, padding="valid", use_bias=False, name=name)(x)
    return conv(2, filters, kernel_size, strides, use_bias=False, name=name)(x)


def _torch_bn(name):
    return norm("batch", epsilon=1e-5, name=name)


def resnet_basic_encoder(inputs, encoder="resnet34"):
    """ResNet18/34 (torchvision layout) on `inputs`; returns the features at strides 2, 4, 8, 16 and 32.

    Args:
        inputs: a `(batch, H, W, C)` tensor.
        encoder: "resnet18" or "resnet34".

    Returns:
        A list of 5 tensors: the stem's ReLU (64 channels) and the ends of `layer1` ... `layer4`.

    Example:
        >>> import keras
        >>> [f.shape[-1] for f in resnet_basic_encoder(keras.Input((64, 64, 3)), "resnet18")]
        [64, 64, 128, 256, 512]
    """
    p = ENCODER_PREFIX
    x = _torch_conv(inputs, 64, 7, 2, f"{p}conv1")
    x = _torch_bn(f"{p}bn1")(x)
    x = layers.ReLU(name=f"{p}relu")(x)
    features = [x]
    x = layers.ZeroPadding2D(1, name=f"{p}maxpool_pad")(x)  # zeros equal torch's -inf padding after a ReLU
    x = max_pool(2, 3, 2, padding="valid", name=f"{p}maxpool")(x)
    for stage, (filters, blocks) in enumerate(zip(RESNET_FILTERS, RESNET_BASIC_BLOCKS[encoder]), start=1):
        for block in range(blocks):
            strides = 2 if stage > 1 and block == 0 else 1
            name = f"{p}layer{stage}_{block}"
            y = _torch_conv(x, filters, 3, strides, f"{name}_conv1")
            y = layers.ReLU(name=f"{name}_relu1")(_torch_bn(f"{name}_bn1")(y))
            y = _torch_bn(f"{name}_bn2")(_torch_conv(y, filters, 3, 1, f"{name}_conv2"))
            if strides != 1 or x.shape[-1] != filters:
                x = _torch_bn(f"{name}_downsample_bn")(_torch_conv(x, filters, 1, strides, f"{name}_downsample_conv"))
            x = layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([x, y]))
        features.append(x)
    return features


def _fetch_imagenet_file(spec):
    try:
        return keras.utils.get_file(spec.file, spec.url, cache_subdir="models", file_hash=spec.hash)
    except Exception as error:  # get_file raises bare Exception on network errors
        raise DataError(spec.url, f"could not fetch the ImageNet {spec.builder} weights ({error}); without network "
                                  f"access, copy {spec.file} into ~/.keras/models/") from error


def application_encoder(inputs, encoder="resnet50", weights=None):
    """A keras.applications encoder on `inputs`, its layers renamed `encoder_<name>`; features at strides 2..32.

    The keras.applications model is built for 3 channels (loading the ImageNet file when
    `weights="imagenet"`), then cloned layer by layer onto `inputs`, so its layers become part of
    the caller's model (no nested model) and any channel count works; its weights are copied,
    the first convolution's kernel adapted to the input channels.

    Args:
        inputs: a `(batch, H, W, C)` tensor.
        encoder: "resnet50" or "densenet121".
        weights: None or "imagenet".

    Returns:
        A list of 5 tensors (see `APPLICATION_ENCODERS` for the layers).

    Raises:
        DataError: when the ImageNet file cannot be fetched or loaded.
    """
    spec = APPLICATION_ENCODERS[encoder]
    build = getattr(keras.applications, spec.builder)
    path = _fetch_imagenet_file(spec) if weights == "imagenet" else None
    try:
        source = build(include_top=False, weights=path, input_shape=(None, None, 3))
    except (ValueError, OSError, KeyError) as error:
        raise DataError(path, f"cannot load as the keras.applications {spec.builder} weights: {error}") from error

    def renamed(layer):
        return layer.__class__.from_config({**layer.get_config(), "name": ENCODER_PREFIX + layer.name})

    encoder_model = keras.models.clone_model(source, input_tensors=inputs, clone_function=renamed)
    if path is not None:
        named = {ENCODER_PREFIX + name: arrays for name, arrays in weights_lib.named_layer_weights(source).items()}
        first = ENCODER_PREFIX + next(layer.name for layer in source.layers if isinstance(layer, layers.Conv2D))
        named[first] = [weights_lib.adapt_input_kernel(named[first][0], inputs.shape[-1]), *named[first][1:]]
        weights_lib.assign_by_name(encoder_model, named, path, required=list(named))
    return [encoder_model.get_layer(ENCODER_PREFIX + name).output for name in spec.skips]


def encoder_features(inputs, encoder, weights, model_name):
    """The features at strides 2, 4, 8, 16, 32 of the named encoder on `inputs` (see the module docstring)."""
    if encoder in RESNET_BASIC_BLOCKS:
        if weights == "imagenet":
            raise ConfigError(f"{model_name}: keras.applications has no ImageNet weights for {encoder}; use "
                              f"encoder='resnet50' with weights='imagenet', or pass the path of a {encoder} weights "
                              "file converted to this builder's layer names")
        return resnet_basic_encoder(inputs, encoder)
    if encoder in APPLICATION_ENCODERS:
        return application_encoder(inputs, encoder, "imagenet" if weights == "imagenet" else None)
    raise ConfigError(f"{model_name}: encoder must be one of {', '.join(ENCODERS)}, got {encoder!r}")


def finish_model(model, weights, encoder_freeze):
    """Load a weights file (a path; "imagenet" is handled by the encoder) and freeze the encoder if asked."""
    if weights is not None and weights != "imagenet":
        weights_lib.load_weights_file(model, weights)
    if encoder_freeze:
        set_encoder_trainable(model, False)
    return model


# --------------------------------------------------------------------------------------------
# Builders.
# --------------------------------------------------------------------------------------------

def _prepare(model_name, input_shape, num_classes, encoder, weights, decoder_filters, output_activation):
    input_shape = check_input_shape(input_shape, 2, STRIDE, model_name)
    check_head(model_name, num_classes, output_activation)
    if encoder not in ENCODERS:
        raise ConfigError(f"{model_name}: encoder must be one of {', '.join(ENCODERS)}, got {encoder!r}")
    decoder_filters = check_filters(model_name, "decoder_filters", decoder_filters, DECODER_DEPTH)
    return input_shape, check_weights(model_name, weights), decoder_filters


@register_model("unet")
def unet(input_shape=(256, 256, 3), num_classes=1, encoder="resnet34", weights=None, encoder_freeze=False,
         decoder_filters=(256, 128, 64, 32, 16), norm="batch", output_activation="sigmoid", name=None):
    """U-Net with a ResNet encoder (segmentation_models_pytorch's `Unet`).

    Args:
        input_shape: `(H, W, C)`, channels last; H and W multiples of 32, or None.
        num_classes: output channels.
        encoder: "resnet18", "resnet34", "resnet50" (or "densenet121").
        weights: None (random), "imagenet" (encoder only, resnet50/densenet121: the keras.applications
            weights; decoder random), or the path of a weights file for the whole model (a
            `.weights.h5` from this builder with the same arguments, or a `.keras`/`.h5` file whose
            layers are copied by name and shape, e.g. a model trained with other `num_classes`).
        encoder_freeze: make the encoder layers non-trainable (see `set_encoder_trainable`).
        decoder_filters: filters of the 5 decoder blocks, from stride 16 to full resolution.
        norm: the decoder's normalization ("batch", "group", "instance", "layer", "none").
        output_activation: "sigmoid", "softmax" or None (logits; the output layer is then "logits").
        name: the model name (default `unet_<encoder>`).

    Returns:
        A functional `keras.Model` from `image` to `probabilities`, `(batch, H, W, num_classes)`.

    Raises:
        ConfigError: a bad argument, e.g. an input size not divisible by 32, or "imagenet" for resnet18/34.
        DataError: a weights file that is missing or does not fit, or ImageNet weights that cannot be fetched.

    Example:
        >>> unet((None, None, 3), num_classes=2, encoder="resnet18",
        ...      decoder_filters=(16, 16, 8, 8, 8)).output_shape
        (None, None, None, 2)
    """
    name = name or f"unet_{encoder}"
    input_shape, weights, decoder_filters = _prepare(name, input_shape, num_classes, encoder, weights,
                                                     decoder_filters, output_activation)
    inputs = keras.Input(input_shape, name="image")
    *skips, x = encoder_features(inputs, encoder, weights, name)
    for block, skip in enumerate(reversed(skips)):
        x = decoder_block(x, skip, decoder_filters[block], norm_kind=norm, name=f"decoder_block{block}")
    x = decoder_block(x, None, decoder_filters[-1], norm_kind=norm, name=f"decoder_block{len(skips)}")
    outputs = segmentation_head(x, num_classes, output_activation=output_activation)
    return finish_model(keras.Model(inputs, outputs, name=name), weights, encoder_freeze)


@register_model("unet_plus_plus")
def unet_plus_plus(input_shape=(224, 224, 3), num_classes=2, encoder="densenet121", weights=None,
                   encoder_freeze=False, decoder_filters=(256, 128, 64, 32, 16), norm="batch",
                   output_activation="sigmoid", name=None):
    """UNet++ (Zhou et al. 2018): nested dense skips on a DenseNet121 (or ResNet) encoder.

    The defaults are the W5 segmentation stage: 224x224x3 slices, two sigmoid masks (whole tumour,
    enhancing tumour), DenseNet121 encoder.

    Args:
        input_shape: `(H, W, C)`, channels last; H and W multiples of 32, or None.
        num_classes: output channels.
        encoder: "densenet121", "resnet18", "resnet34" or "resnet50".
        weights: None, "imagenet" (densenet121/resnet50 encoder) or a weights file path, as in `unet`.
        encoder_freeze: make the encoder layers non-trainable (see `set_encoder_trainable`).
        decoder_filters: the filters of every node at strides 16, 8, 4, 2, then of the last block.
        norm: the decoder's normalization.
        output_activation: "sigmoid", "softmax" or None (logits).
        name: the model name (default `unet_plus_plus_<encoder>`).

    Returns:
        A functional `keras.Model` from `image` to `probabilities`, `(batch, H, W, num_classes)`.

    Raises:
        ConfigError: a bad argument (the message names it and the rule).
        DataError: a weights file that is missing or does not fit, or ImageNet weights that cannot be fetched.

    Example:
        >>> unet_plus_plus((64, 64, 3), encoder="resnet18", decoder_filters=(16, 16, 8, 8, 8)).output_shape
        (None, 64, 64, 2)
    """
    name = name or f"unet_plus_plus_{encoder}"
    input_shape, weights, decoder_filters = _prepare(name, input_shape, num_classes, encoder, weights,
                                                     decoder_filters, output_activation)
    inputs = keras.Input(input_shape, name="image")
    features = encoder_features(inputs, encoder, weights, name)
    levels = len(features) - 1
    nodes = {(level, 0): feature for level, feature in enumerate(features)}
    for j in range(1, levels + 1):
        for i in range(levels - j + 1):
            nodes[i, j] = decoder_block(nodes[i + 1, j - 1], [nodes[i, k] for k in range(j)],
                                        decoder_filters[levels - 1 - i], norm_kind=norm, name=f"decoder_x{i}_{j}")
    x = decoder_block(nodes[0, levels], None, decoder_filters[-1], norm_kind=norm, name="decoder_final")
    outputs = segmentation_head(x, num_classes, output_activation=output_activation)
    return finish_model(keras.Model(inputs, outputs, name=name), weights, encoder_freeze)
