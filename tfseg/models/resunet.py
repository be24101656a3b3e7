"""ResUNet (Zhang, Liu and Wang 2018, "Road extraction by deep residual U-Net"): a U-Net of residual blocks.

The network of the lower-grade glioma FLAIR workflow. Every unit is a pre-activated residual
block (`tfseg.models.blocks.residual_block_preact`: norm - ReLU - conv3 - norm - ReLU - conv3,
plus a 1x1-projected, normalized shortcut). Encoder: the first block reads the image (no
pre-activation) at full resolution with `filters[0]`; each further block halves the size with a
stride-2 first convolution and has `filters[i]`. A bridge block halves once more
(`bridge_filters`). Decoder: per level, upsample 2x, concatenate the encoder block's output and
apply a residual block with that level's filters (`tfseg.models.blocks.decoder_block` with
`residual=True`). A 1x1 convolution gives the classes. The total stride is `2**len(filters)`.

Encoder layers are named `encoder_...`, so `tfseg.models.unet.set_encoder_trainable` freezes
them, e.g. after loading a pretrained ResUNet from a file.

Example:
    >>> model = resunet((64, 64, 3), num_classes=1, filters=(8, 16, 32), bridge_filters=64)
    >>> model.output_shape
    (None, 64, 64, 1)
"""
import numbers

import keras

from tfseg.errors import ConfigError
from tfseg.models.blocks import check_head, check_input_shape, decoder_block, residual_block_preact, segmentation_head
from tfseg.models.registry import register_model
from tfseg.models.unet import ENCODER_PREFIX, check_filters, check_weights, finish_model


@register_model("resunet")
def resunet(input_shape=(256, 256, 3), num_classes=1, filters=(64, 128, 256, 512), bridge_filters=1024,
            norm="batch", output_activation="sigmoid", weights=None, encoder_freeze=False, name="resunet"):
    """ResUNet: residual encoder, bridge and decoder with U-Net skips (Zhang et al. 2018).

    Args:
        input_shape: `(H, W, C)`, channels last; H and W multiples of `2**len(filters)` (16 by
            default), or None.
        num_classes: output channels (1 for a binary mask with sigmoid).
        filters: filters of the encoder levels, from full resolution down; the decoder mirrors them.
        bridge_filters: filters of the bridge block at the coarsest level.
        norm: "batch", "group", "instance", "layer" or "none".
        output_activation: "sigmoid", "softmax" or None (logits; the output layer is then "logits").
        weights: None (random) or the path of a weights file: a `.weights.h5` from this builder with
            the same arguments, or a `.keras`/`.h5` file copied by layer name and shape.
            keras.applications has no ResUNet, so "imagenet" is not accepted: for an ImageNet
            encoder use `unet(encoder="resnet50", weights="imagenet")` (or `unet(encoder="resnet34")`
            with a converted weights file).
        encoder_freeze: make the encoder layers (`encoder_...`) non-trainable.
        name: the model name.

    Returns:
        A functional `keras.Model` from `image` to `probabilities`, `(batch, H, W, num_classes)`.

    Raises:
        ConfigError: a bad argument, e.g. an input size not divisible by `2**len(filters)`.
        DataError: a weights file that is missing or does not fit.

    Example:
        >>> resunet((None, None, 1), num_classes=2, filters=(8, 16), bridge_filters=32,
        ...         output_activation="softmax").output_shape
        (None, None, None, 2)
    """
    filters = check_filters(name, "filters", filters)
    if not isinstance(bridge_filters, numbers.Integral) or isinstance(bridge_filters, bool) or bridge_filters < 1:
        raise ConfigError(f"{name}: bridge_filters must be a positive integer, got {bridge_filters!r}")
    input_shape = check_input_shape(input_shape, 2, 2 ** len(filters), name)
    check_head(name, num_classes, output_activation)
    weights = check_weights(name, weights)
    if weights == "imagenet":
        raise ConfigError(f"{name}: keras.applications has no ResUNet, so there are no ImageNet weights for it; for "
                          "ImageNet transfer learning use unet(encoder='resnet50', weights='imagenet') (or "
                          "unet(encoder='resnet34') with a converted weights file), or pass a ResUNet weights file")

    inputs = keras.Input(input_shape, name="image")
    x = inputs
    skips = []
    for level, level_filters in enumerate(filters):
        x = residual_block_preact(x, level_filters, norm_kind=norm, strides=2 if level else 1,
                                  preactivate=bool(level), name=f"{ENCODER_PREFIX}block{level}")
        skips.append(x)
    x = residual_block_preact(x, bridge_filters, norm_kind=norm, strides=2, name="bridge")
    for level in reversed(range(len(filters))):
        x = decoder_block(x, skips[level], filters[level], norm_kind=norm, residual=True, name=f"decoder_block{level}")
    outputs = segmentation_head(x, num_classes, output_activation=output_activation)
    return finish_model(keras.Model(inputs, outputs, name=name), weights, encoder_freeze)
