"""The function every export format serves, and the `ServingSpec` used when none is given.

Example:
    >>> import keras
    >>> inputs = keras.Input((None, None, 3))
    >>> default_spec(keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))).in_channels
    3
"""
import tensorflow as tf

from tfseg.errors import ConfigError
from tfseg.export.savedmodel import ServingSpec, output_labels, serving_function

__all__ = ["default_spec", "serving_endpoint"]


def default_spec(model):
    """The `ServingSpec` used when none is given: model channels in, z-score, pad to stride 32."""
    return ServingSpec(image_size=None, stride=32, in_channels=int(model.input_shape[-1] or 1))


def serving_endpoint(model, spec=None, include_preprocessing=True, input_shape=None):
    """The function every format exports, with its input signature.

    Args:
        model: a Keras model with input `(B, *spatial, C)`.
        spec: a `ServingSpec`, or None for `default_spec(model)`.
        include_preprocessing: True: raw images through the spec's preprocessing (the
            SavedModel's serving function); False: the bare model.
        input_shape: a full input shape `(B, *spatial, C)` to fix (None entries stay dynamic);
            None: batch and spatial sizes dynamic.

    Returns:
        `(fn, input_signature, spec)`: `fn(image) -> {"probabilities", "labels"}` (not yet a
        `tf.function`), a one-element list holding the `tf.TensorSpec` named "image", and the spec.

    Raises:
        ConfigError: `input_shape` does not fit the model (rank or channels).

    Example:
        >>> import keras
        >>> inputs = keras.Input((None, None, None, 2))
        >>> model = keras.Model(inputs, keras.layers.Conv3D(3, 1, activation="softmax")(inputs))
        >>> fn, signature, spec = serving_endpoint(model, include_preprocessing=False)
        >>> signature[0].shape.as_list(), spec.activation
        ([None, None, None, None, 2], 'softmax')
    """
    spec = spec if spec is not None else default_spec(model)
    if spec.activation not in ("softmax", "sigmoid"):
        raise ConfigError(f"activation must be 'softmax' or 'sigmoid', got {spec.activation!r}")
    rank = len(model.input_shape)
    if include_preprocessing:
        channels = spec.in_channels
        fn = serving_function(model, spec)
    else:
        channels = model.input_shape[-1]

        def fn(image):
            probabilities = tf.cast(model(image, training=False), tf.float32)
            return {"probabilities": probabilities, "labels": output_labels(probabilities, spec)}

    if input_shape is None:
        shape = (None,) * (rank - 1) + (channels,)
    else:
        shape = tuple(None if size is None else int(size) for size in input_shape)
        if len(shape) != rank or shape[-1] != channels:
            raise ConfigError(f"input_shape {tuple(input_shape)} does not fit the model: expected {rank} "
                              f"dimensions (batch, {rank - 2} spatial, channels) ending in {channels} channels")
        if any(size is not None and size < 1 for size in shape):
            raise ConfigError(f"input_shape {tuple(input_shape)} has a size below 1")
    return fn, [tf.TensorSpec(shape, tf.float32, name="image")], spec
