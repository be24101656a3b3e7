"""A classifier over a sequence of 2D slices: a shared CNN per slice, a bidirectional LSTM, a linear head.

The RSNA-MICCAI 2021 MGMT classifier (workflow W5, stage 2): the input is a chunk of `T` slices
`(batch, T, H, W, C)`; one 2D backbone (the same weights for every slice) turns each slice into a
feature vector (global average pooling of its last feature map), a bidirectional LSTM runs over
the `T` vectors and returns every time step's output (`2 * lstm_units` values each), the `T`
outputs are concatenated (flattened) into one vector and a dense layer gives `num_outputs`
logits. The model outputs logits (train with `from_logits=True`); `probability_model` wraps it
with a sigmoid for serving.

Backbones (`backbone=`):

- a keras.applications model, named as Keras names it or in lower case with or without
  underscores: "resnet50v2", "ResNet50V2", "efficientnet_b0", "EfficientNetB0", "densenet121", ...
  `weights="imagenet"` loads keras.applications' ImageNet weights (these need `C == 3`; the
  EfficientNets carry their own input rescaling and expect 0..255 pixel values).
- a tfseg encoder of `tfseg.models.unet` ("resnet18", "resnet34"; "resnet50"/"densenet121" resolve
  to the keras.applications models above), its stride-32 features pooled.
- "small_cnn": a few conv - batch norm - ReLU - max-pool blocks of `backbone_filters` filters, for
  tests and CPU-sized runs.

The default, "resnet50v2", stands in for the seed's timm NFNet (eca_nfnet_l0): keras.applications
has no normalizer-free network, and NFNets are pre-activation bottleneck ResNets (ResNet-D stem,
scaled residual branches) of about 24M parameters, which is what ResNet50V2 (pre-activation
bottleneck ResNet, 23.6M parameters) is, minus the weight standardization that replaces batch
norm. EfficientNet-B0 is the cheaper alternative with a comparable ImageNet accuracy per FLOP.

The backbone is one nested model named `encoder_backbone`, applied to every slice by a
`TimeDistributed` layer named `encoder_slices`, so `tfseg.models.unet.set_encoder_trainable`
freezes and unfreezes it (the warm-up epochs), also on a model loaded back from `.keras`.

Example:
    >>> model = slice_sequence_classifier((6, 32, 32, 3), backbone="small_cnn", backbone_filters=(4, 8),
    ...                                   lstm_units=4)
    >>> model.output_shape
    (None, 1)
"""
import logging

import keras
from keras import layers

from tfseg.errors import ConfigError
from tfseg.models import weights as weights_lib
from tfseg.models.registry import register_model
from tfseg.models.unet import APPLICATION_ENCODERS, RESNET_BASIC_BLOCKS, check_filters, check_weights
from tfseg.models.unet import resnet_basic_encoder, set_encoder_trainable

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_BACKBONE", "application_names", "slice_backbone", "slice_sequence_classifier",
           "probability_model", "set_encoder_trainable"]

#: keras.applications' closest model to the seed's NFNet (see the module docstring).
DEFAULT_BACKBONE = "resnet50v2"


def _key(name):
    return str(name).lower().replace("_", "").replace("-", "")


def application_names():
    """The keras.applications model builders by normalized name (lower case, no underscores).

    Example:
        >>> application_names()["efficientnetb0"]
        'EfficientNetB0'
    """
    return {_key(name): name for name in dir(keras.applications)
            if name[:1].isupper() and callable(getattr(keras.applications, name))}


def _application(name):
    return getattr(keras.applications, application_names()[_key(name)])


def _small_cnn(inputs, filters):
    x = inputs
    for i, count in enumerate(filters):
        x = layers.Conv2D(count, 3, padding="same", use_bias=False, name=f"block{i + 1}_conv")(x)
        x = layers.BatchNormalization(name=f"block{i + 1}_bn")(x)
        x = layers.Activation("relu", name=f"block{i + 1}_relu")(x)
        x = layers.MaxPooling2D(2, name=f"block{i + 1}_pool")(x)
    return x


def slice_backbone(slice_shape, backbone=DEFAULT_BACKBONE, weights=None, backbone_filters=(16, 32, 64)):
    """The per-slice feature extractor: a `keras.Model` `(H, W, C) -> (F,)` named `encoder_backbone`.

    Args:
        slice_shape: `(H, W, C)` of one slice.
        backbone: "small_cnn", a tfseg encoder name or a keras.applications model (module docstring).
        weights: None or "imagenet" (keras.applications backbones only).
        backbone_filters: the blocks of "small_cnn".

    Returns:
        A `keras.Model` whose output is the globally average-pooled last feature map.

    Raises:
        ConfigError: an unknown backbone, or ImageNet weights for a backbone without them.

    Example:
        >>> slice_backbone((32, 32, 3), "small_cnn", backbone_filters=(4, 8)).output_shape
        (None, 8)
    """
    inputs = keras.Input(tuple(slice_shape), name="slice")
    key = _key(backbone)
    if key == "smallcnn":
        if weights == "imagenet":
            raise ConfigError("slice backbone 'small_cnn' has no ImageNet weights")
        features = _small_cnn(inputs, check_filters("slice_backbone", "backbone_filters", backbone_filters))
    elif key in RESNET_BASIC_BLOCKS:
        if weights == "imagenet":
            raise ConfigError(f"keras.applications has no ImageNet weights for {backbone}; use 'resnet50v2', "
                              "'resnet50' or an EfficientNet")
        features = resnet_basic_encoder(inputs, key)[-1]
    elif key in application_names() or key in APPLICATION_ENCODERS:
        build = _application(key)
        if weights == "imagenet" and slice_shape[-1] != 3:
            raise ConfigError(f"ImageNet weights of {build.__name__} need 3 input channels, got {slice_shape[-1]}")
        source = build(include_top=False, weights=weights, input_shape=tuple(slice_shape))
        features = source(inputs)
    else:
        raise ConfigError(f"unknown slice backbone {backbone!r}: use 'small_cnn', 'resnet18', 'resnet34' or a "
                          f"keras.applications model such as {DEFAULT_BACKBONE!r} or 'efficientnet_b0'")
    pooled = layers.GlobalAveragePooling2D(name="pool")(features)
    return keras.Model(inputs, pooled, name="encoder_backbone")


@register_model("slice_sequence_classifier")
def slice_sequence_classifier(input_shape=(35, 224, 224, 3), backbone=DEFAULT_BACKBONE, weights=None,
                              lstm_units=64, num_outputs=1, dropout=0.0, backbone_filters=(16, 32, 64),
                              encoder_freeze=False, name="slice_sequence_classifier"):
    """CNN per slice + bidirectional LSTM over the slices + linear head on the concatenated time steps.

    Args:
        input_shape: `(T, H, W, C)`: chunk length, slice size, channels (3 for [image, WT, ET]).
            `T` must be fixed (the head sees `T * 2 * lstm_units` values); H and W may be None
            for backbones without a fixed size.
        backbone: see the module docstring; default `DEFAULT_BACKBONE`.
        weights: None (random), "imagenet" (keras.applications backbones) or the path of a
            weights file for the whole model (`tfseg.models.weights.load_weights_file`).
        lstm_units: hidden units of each LSTM direction (64 as in the seed).
        num_outputs: logits out (1 for a binary label such as MGMT methylation).
        dropout: dropout rate before the head.
        backbone_filters: blocks of the "small_cnn" backbone.
        encoder_freeze: build with the backbone frozen (the warm-up phase).
        name: the Keras model name.

    Returns:
        A functional `keras.Model` `(B, T, H, W, C) -> (B, num_outputs)` logits.

    Raises:
        ConfigError: a bad argument.

    Example:
        >>> model = slice_sequence_classifier((4, 32, 32, 3), backbone="small_cnn", backbone_filters=(4,),
        ...                                   lstm_units=2, num_outputs=2)
        >>> model.output_shape, model.get_layer("bilstm").output.shape
        ((None, 2), (None, 4, 4))
    """
    shape = tuple(input_shape)
    if len(shape) != 4 or not isinstance(shape[0], int) or shape[0] < 1 or not isinstance(shape[-1], int):
        raise ConfigError(f"{name}: input_shape must be (T, H, W, C) with a fixed chunk length T and channels C, "
                          f"got {input_shape!r}")
    for what, value in (("lstm_units", lstm_units), ("num_outputs", num_outputs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name}: {what} must be a positive integer, got {value!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(f"{name}: dropout must be in [0, 1), got {dropout!r}")
    weights = check_weights(name, weights)
    inputs = keras.Input(shape, name="slices")
    cnn = slice_backbone(shape[1:], backbone, "imagenet" if weights == "imagenet" else None, backbone_filters)
    features = layers.TimeDistributed(cnn, name="encoder_slices")(inputs)
    sequence = layers.Bidirectional(layers.LSTM(lstm_units, return_sequences=True), name="bilstm")(features)
    x = layers.Flatten(name="concat_steps")(sequence)
    if dropout:
        x = layers.Dropout(float(dropout), name="dropout")(x)
    logits = layers.Dense(num_outputs, name="head", dtype="float32")(x)
    model = keras.Model(inputs, logits, name=name)
    if weights is not None and weights != "imagenet":
        weights_lib.load_weights_file(model, weights)
    if encoder_freeze:
        set_encoder_trainable(model, False)
    return model


def probability_model(model):
    """`model` followed by a sigmoid: chunk probabilities instead of logits (for serving).

    Example:
        >>> import numpy as np
        >>> logits = slice_sequence_classifier((2, 16, 16, 3), backbone="small_cnn", backbone_filters=(2,),
        ...                                    lstm_units=2)
        >>> p = probability_model(logits)(np.zeros((1, 2, 16, 16, 3), "float32"))
        >>> float(p.numpy().min()) >= 0.0 and float(p.numpy().max()) <= 1.0
        True
    """
    outputs = layers.Activation("sigmoid", name="probability", dtype="float32")(model.output)
    return keras.Model(model.input, outputs, name=f"{model.name}_probability")
