"""Fully convolutional networks (Long, Shelhamer and Darrell, CVPR 2015): FCN-8s on VGG16 and FCN-AlexNet.

Both builders keep the classification networks' layer names, so pretrained weights map by name:
the keras.applications VGG16 names (`block1_conv1` ... `block5_pool`) for FCN-8s and Caffe's
(`conv1` ... `conv5`, `fc6`, `fc7`) for FCN-AlexNet. The fully connected layers are
convolutions (`fc6` a 7x7 or 6x6 convolution on the stride-32 feature map, `fc7` a 1x1). Unlike
the Caffe originals (which pad the input by 100 pixels and crop), every layer is "same"-padded,
so the output has the size of the input whenever height and width are multiples of 32.

Initialization: He-normal convolution kernels; the class-score layers start at zero and the
upsampling layers as bilinear interpolation, as in the reference implementation, so an untrained
network predicts uniform probabilities.

Example:
    >>> model = fcn8s((64, 64, 1), num_classes=2, width=0.125, fc_units=16)
    >>> model.output_shape
    (None, 64, 64, 2)
"""
import numbers
import os

import keras
from keras import layers

from tfseg.errors import ConfigError
from tfseg.models import weights as weights_lib
from tfseg.models.blocks import check_head, check_input_shape, conv, conv_transpose, max_pool
from tfseg.models.blocks import scaled_filters
from tfseg.models.layers import LocalResponseNormalization, Scale
from tfseg.models.registry import register_model


STRIDE = 32

#: VGG16's convolution blocks: (filters, number of 3x3 convolutions).
VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
#: AlexNet's convolutions: (name, filters, kernel, stride, groups, LRN + max-pool after it).
ALEXNET_CONVS = (("conv1", 96, 11, 4, 1, True), ("conv2", 256, 5, 1, 2, True), ("conv3", 384, 3, 1, 1, False),
                 ("conv4", 384, 3, 1, 2, False), ("conv5", 256, 3, 1, 2, False))
#: The AlexNet layers a Caffe-converted .npz file must provide (fc8 is class-specific and skipped).
ALEXNET_PRETRAINED_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")


def _check_arguments(model_name, num_classes, fc_units, width, dropout, output_activation):
    check_head(model_name, num_classes, output_activation)
    if not isinstance(fc_units, numbers.Integral) or isinstance(fc_units, bool) or fc_units < 1:
        raise ConfigError(f"{model_name}: fc_units must be a positive integer, got {fc_units!r}")
    if not isinstance(width, numbers.Real) or isinstance(width, bool) or not width > 0:
        raise ConfigError(f"{model_name}: width must be a positive number, got {width!r}")
    if not isinstance(dropout, numbers.Real) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise ConfigError(f"{model_name}: dropout must be in [0, 1), got {dropout!r}")


def _check_weights(model_name, weights):
    """Return "imagenet", None or a path string; raise ConfigError for anything else."""
    if weights is None or weights == "imagenet":
        return weights
    if isinstance(weights, (str, os.PathLike)):
        return os.fspath(weights)
    raise ConfigError(f"{model_name}: weights must be None, 'imagenet' or a path to a weights file, "
                      f"got {weights!r}")


def _output(x, output_activation):
    """The named output layer, in float32 even under a mixed-precision policy."""
    if output_activation is None:
        return layers.Activation("linear", dtype="float32", name="logits")(x)
    if output_activation == "softmax":
        return layers.Softmax(axis=-1, dtype="float32", name="probabilities")(x)
    return layers.Activation("sigmoid", dtype="float32", name="probabilities")(x)


def _classifier_head(x, fc_units, fc6_kernel, dropout, num_classes):
    """The convolutionalized classifier: fc6 (k x k) and fc7 (1x1) with dropout, then zero-initialized class scores."""
    x = conv(2, fc_units, fc6_kernel, activation="relu", name="fc6")(x)
    x = layers.Dropout(dropout, name="drop6")(x)
    x = conv(2, fc_units, 1, activation="relu", name="fc7")(x)
    x = layers.Dropout(dropout, name="drop7")(x)
    return conv(2, num_classes, 1, kernel_initializer="zeros", name="score_fr")(x)


@register_model("fcn8s")
def fcn8s(input_shape=(256, 256, 3), num_classes=2, weights=None, fc_units=4096, width=1.0, dropout=0.5,
          scale_skips=False, output_activation="softmax", name="fcn8s"):
    """FCN-8s (Long et al. 2015): VGG16 made fully convolutional, with pool4 and pool3 skips.

    The encoder is VGG16's 13 3x3 convolutions (ReLU) in 5 blocks, each ended by a 2x2 max-pool;
    `fc6` is a 7x7 convolution with `fc_units` filters, `fc7` a 1x1 one (both ReLU + dropout),
    `score_fr` scores the classes at stride 32. A learned 2x upsampling (`upscore2`, 4x4 stride 2,
    bilinear-initialized, no bias) is added to a 1x1 class score of pool4 (`score_pool4`), upsampled
    2x again (`upscore_pool4`) and added to the score of pool3 (`score_pool3`), then upsampled 8x
    (`upscore8`, 16x16 stride 8) to the input size.

    Args:
        input_shape: `(H, W, C)`, channels last; H and W multiples of 32, or None for any such size
            at run time.
        num_classes: output channels.
        weights: None (random), "imagenet" (the keras.applications VGG16 ImageNet weights for the
            13 encoder convolutions only; fc6, fc7 and the score layers stay as initialized; for a
            1-channel input `block1_conv1` is summed over its RGB inputs, the response to a gray
            image; the VGG16 weights expect `keras.applications.vgg16.preprocess_input`-style
            BGR, mean-subtracted input), or the path of a `.weights.h5` saved from this builder
            with the same arguments, or of a `.keras`/legacy `.h5` file whose weights are copied
            into layers of the same name and shape (the others are logged).
        fc_units: filters of fc6 and fc7 (4096 in VGG16; smaller for CPU-sized training).
        width: multiplier of every encoder filter count (VGG16's 64 ... 512); 1.0 is VGG16.
        dropout: dropout rate after fc6 and fc7.
        scale_skips: scale pool4 by 0.01 and pool3 by 0.0001 before their scores, as the "at-once"
            FCN-8s does so that all skips can be trained together from the start.
        output_activation: "softmax" over the classes, "sigmoid" per channel, or None for logits.
        name: the model name.

    Returns:
        A functional `keras.Model` from `(batch, H, W, C)` images to `(batch, H, W, num_classes)`;
        its output layer is named "probabilities" ("logits" when `output_activation` is None).

    Raises:
        ConfigError: for invalid arguments, e.g. an input size not divisible by 32, or
            `weights="imagenet"` with `width != 1`.
        DataError: if a weights file is missing or does not fit.

    Example:
        >>> model = fcn8s((None, None, 1), num_classes=3, width=0.125, fc_units=16)
        >>> model.output_shape
        (None, None, None, 3)
    """
    input_shape = check_input_shape(input_shape, 2, STRIDE, name)
    _check_arguments(name, num_classes, fc_units, width, dropout, output_activation)
    weights = _check_weights(name, weights)
    if weights == "imagenet" and width != 1.0:
        raise ConfigError(f"{name}: weights='imagenet' needs width=1.0 (VGG16's own filter counts); the ImageNet "
                          f"kernels cannot be loaded into a network with width={width}")

    inputs = keras.Input(input_shape, name="image")
    x = inputs
    pools = []
    for block, (filters, repeats) in enumerate(VGG16_BLOCKS, start=1):
        for index in range(1, repeats + 1):
            x = conv(2, scaled_filters(filters, width), 3, activation="relu", name=f"block{block}_conv{index}")(x)
        x = max_pool(2, 2, 2, name=f"block{block}_pool")(x)
        pools.append(x)
    pool3, pool4 = pools[2], pools[3]

    x = _classifier_head(x, fc_units, 7, dropout, num_classes)
    x = conv_transpose(2, num_classes, 4, 2, name="upscore2")(x)

    if scale_skips:
        pool4 = Scale(0.01, name="scale_pool4")(pool4)
    score_pool4 = conv(2, num_classes, 1, kernel_initializer="zeros", name="score_pool4")(pool4)
    x = layers.Add(name="fuse_pool4")([x, score_pool4])
    x = conv_transpose(2, num_classes, 4, 2, name="upscore_pool4")(x)

    if scale_skips:
        pool3 = Scale(0.0001, name="scale_pool3")(pool3)
    score_pool3 = conv(2, num_classes, 1, kernel_initializer="zeros", name="score_pool3")(pool3)
    x = layers.Add(name="fuse_pool3")([x, score_pool3])
    x = conv_transpose(2, num_classes, 16, 8, name="upscore8")(x)
    model = keras.Model(inputs, _output(x, output_activation), name=name)

    if weights == "imagenet":
        encoder = [f"block{b}_conv{i}" for b, (_, n) in enumerate(VGG16_BLOCKS, start=1) for i in range(1, n + 1)]
        weights_lib.assign_by_name(model, weights_lib.vgg16_imagenet_weights(), weights_lib.VGG16_NOTOP_FILE,
                                   required=encoder)
    elif weights is not None:
        weights_lib.load_weights_file(model, weights)
    return model


@register_model("fcn_alexnet")
def fcn_alexnet(input_shape=(256, 256, 3), num_classes=2, weights=None, fc_units=4096, width=1.0, dropout=0.5,
                output_activation="softmax", name="fcn_alexnet"):
    """FCN-AlexNet (Long et al. 2015; the DIGITS medical-imaging lab): AlexNet made fully convolutional, stride 32.

    conv1 11x11/4 (96) + ReLU + LRN + 3x3/2 max-pool; conv2 5x5 (256, 2 groups) + ReLU + LRN +
    max-pool; conv3 3x3 (384); conv4 3x3 (384, 2 groups); conv5 3x3 (256, 2 groups) + max-pool;
    `fc6` a 6x6 convolution and `fc7` a 1x1 one (`fc_units` filters, ReLU + dropout); `score_fr`
    a 1x1 class score; one learned 32x upsampling (`upscore`, 64x64 stride 32, bilinear-initialized,
    no bias) back to the input size. LRN is Caffe's (size 5, alpha 1e-4, beta 0.75).

    Args:
        input_shape: `(H, W, C)`, channels last; H and W multiples of 32, or None.
        num_classes: output channels.
        weights: None (random), or the path of a `.weights.h5` saved from this builder with the
            same arguments, of a `.keras`/legacy `.h5` file (weights copied by layer name and shape),
            or of Caffe-converted AlexNet weights as `.npz` (`save_caffe_npz` of `bvlc_alexnet.npy`,
            `{layer: [W, b]}`; a pickled `.npy` is refused, never unpickled; conv1-conv5, fc6 and fc7
            are loaded, fc6/fc7 reshaped into convolutions, fc8 skipped; conv1 is summed over its
            colour inputs for a 1-channel model; the Caffe weights expect BGR, mean-subtracted
            0-255 input). keras.applications has no AlexNet, so "imagenet" is not accepted.
        fc_units: filters of fc6 and fc7 (4096 in AlexNet).
        width: multiplier of every convolution's filter count (rounded to even numbers for the
            two-group layers); 1.0 is AlexNet.
        dropout: dropout rate after fc6 and fc7.
        output_activation: "softmax", "sigmoid" or None (logits).
        name: the model name.

    Returns:
        A functional `keras.Model` from `(batch, H, W, C)` to `(batch, H, W, num_classes)`; its
        output layer is named "probabilities" ("logits" when `output_activation` is None).

    Raises:
        ConfigError: for invalid arguments (an input size not divisible by 32, weights="imagenet").
        DataError: if a weights file is missing or does not fit (naming the file and the layer).

    Example:
        >>> model = fcn_alexnet((64, 64, 1), num_classes=2, width=0.125, fc_units=16)
        >>> model.output_shape
        (None, 64, 64, 2)
    """
    input_shape = check_input_shape(input_shape, 2, STRIDE, name)
    _check_arguments(name, num_classes, fc_units, width, dropout, output_activation)
    weights = _check_weights(name, weights)
    if weights == "imagenet":
        raise ConfigError(f"{name}: keras.applications has no AlexNet, so weights='imagenet' is not available; pass "
                          "the path of a Caffe-converted bvlc_alexnet.npz (see tfseg.models.weights.save_caffe_npz) instead")

    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for index, (layer_name, filters, kernel, strides, groups, norm_and_pool) in enumerate(ALEXNET_CONVS, start=1):
        x = conv(2, scaled_filters(filters, width, divisor=2), kernel, strides, groups=groups, activation="relu",
                 name=layer_name)(x)
        if norm_and_pool:
            x = LocalResponseNormalization(depth_radius=2, bias=1.0, alpha=1e-4, beta=0.75, name=f"norm{index}")(x)
            x = max_pool(2, 3, 2, name=f"pool{index}")(x)
    x = max_pool(2, 3, 2, name="pool5")(x)
    x = _classifier_head(x, fc_units, 6, dropout, num_classes)
    x = conv_transpose(2, num_classes, 64, 32, name="upscore")(x)
    model = keras.Model(inputs, _output(x, output_activation), name=name)

    if weights is not None:
        weights_lib.load_weights_file(model, weights, caffe_layers=ALEXNET_PRETRAINED_LAYERS)
    return model
