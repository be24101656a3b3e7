"""Export a segmentation model as a TensorFlow SavedModel for TF Serving.

The exported `serving_default` signature takes raw float32 images (2D `(B, H, W, C)` or 3D
`(B, D, H, W, C)`, following the model) of any batch size and any spatial size, applies the training preprocessing (per-image normalization, gray→RGB, resize to
the training size or pad to the model's stride), runs the model, maps the probabilities back to
the input's size, and returns named outputs:

- `probabilities`: float32 `(B, H, W, num_classes)`;
- `labels`: int32 `(B, H, W)`, the arg-max class (softmax models) or, for sigmoid models,
  `(B, H, W, C)` of 0/1 per channel.

The preprocessing settings and class names are also written as JSON next to the graph
(`assets.extra/tfseg.json`), so a client can read them without tfseg. The directory is written
atomically: a crash leaves either the previous export or none, never half of one.

Example:
    >>> import keras, tempfile, os
    >>> inputs = keras.Input((None, None, 1))
    >>> model = keras.Model(inputs, keras.layers.Conv2D(2, 1, activation="softmax")(inputs))
    >>> spec = ServingSpec(image_size=None, stride=1, in_channels=1, class_names=("bg", "lv"))
    >>> path = export_savedmodel(model, os.path.join(tempfile.mkdtemp(), "saved_model"), spec)
    >>> sorted(os.listdir(path))[:3]
    ['assets', 'assets.extra', 'fingerprint.pb']
"""
import dataclasses
import json
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from tfseg.data.transforms.intensity import check_normalization, gray_to_rgb, normalize_intensity
from tfseg.data.transforms.labels import regions_to_brats_labels
from tfseg.errors import ConfigError
from tfseg.utils.atomic import clean_stale_temporaries

METADATA_FILE = os.path.join("assets.extra", "tfseg.json")


@dataclasses.dataclass(frozen=True)
class ServingSpec:
    """What the serving signature does around the model.

    Attributes:
        image_size: `(height, width)` the model was trained at: inputs are resized to it and the
            probabilities resized back. None: inputs keep their size, padded to `stride`.
        stride: the model's total downsampling; padded sizes are multiples of it.
        in_channels: channels of the raw input (1 for MRI); repeated to the model's channels if needed.
        normalization: per-image normalization applied first ("zscore", "zscore_nonzero", "minmax", "none").
        activation: "softmax" (labels = arg-max) or "sigmoid" (labels = probability > 0.5 per channel).
        class_names: names of the output channels, stored in the metadata.
        label_map: None, or "brats": sigmoid WT/TC/ET channels are merged into one BraTS label map
            (0/1/2/4, `tfseg.data.transforms.labels.regions_to_brats_labels`) as `labels`.
        extra: more JSON-serializable metadata (e.g. spacing, dataset, metrics).
    """

    image_size: tuple = None
    stride: int = 32
    in_channels: int = 1
    normalization: str = "zscore"
    activation: str = "softmax"
    class_names: tuple = ()
    label_map: str = None
    extra: dict = dataclasses.field(default_factory=dict)

    def to_json(self):
        return {**dataclasses.asdict(self), "signature": "serving_default",
                "inputs": {"image": f"float32 (batch, *spatial, {self.in_channels})"},
                "outputs": {"probabilities": "float32 (batch, *spatial, classes)",
                            "labels": "int32 (batch, *spatial)" if self.activation == "softmax" or self.label_map
                            else "int32 (batch, *spatial, classes)"}}


def output_labels(probabilities, spec):
    """The `labels` output: arg-max (softmax), 0/1 per channel (sigmoid), or a merged BraTS label map."""
    if spec.label_map == "brats":
        return tf.cast(regions_to_brats_labels(probabilities), tf.int32)
    if spec.activation == "softmax":
        return tf.argmax(probabilities, axis=-1, output_type=tf.int32)
    return tf.cast(probabilities > 0.5, tf.int32)


def serving_function(model, spec):
    """The `tf.function` body of the serving signature: raw images → {"probabilities", "labels"}."""
    check_normalization(spec.normalization)
    if spec.label_map not in (None, "brats"):
        raise ConfigError(f"label_map must be None or 'brats', got {spec.label_map!r}")
    if spec.activation not in ("softmax", "sigmoid"):
        raise ConfigError(f"activation must be 'softmax' or 'sigmoid', got {spec.activation!r}")
    model_channels = model.input_shape[-1]

    def serve(image):
        x = tf.map_fn(lambda one: normalize_intensity(one, spec.normalization), image)
        if model_channels == 3 and spec.in_channels == 1:
            x = gray_to_rgb(x)
        if spec.image_size is not None:
            x = tf.image.resize(x, spec.image_size, method="bilinear", antialias=True)
            probabilities = model(x, training=False)
            probabilities = tf.image.resize(probabilities, tf.shape(image)[1:3], method="bilinear")
        else:
            fill = -1.0 if spec.normalization == "percentile" else 0.0  # the normalized background
            probabilities = _crop_like(model(_pad_to_multiple(x, spec.stride, fill), training=False), image)
        probabilities = tf.cast(probabilities, tf.float32)
        labels = output_labels(probabilities, spec)
        return {"probabilities": probabilities, "labels": labels}

    return serve


def _pad_to_multiple(x, stride, value=0.0):
    """Pad every spatial axis of a channels-last batch at its end to a multiple of `stride` with `value`."""
    shape = tf.shape(x)
    spatial = shape[1:-1]
    padded = (spatial + stride - 1) // stride * stride
    paddings = tf.concat([[[0, 0]], tf.stack([tf.zeros_like(spatial), padded - spatial], axis=1), [[0, 0]]], 0)
    padded_x = tf.pad(x, paddings, constant_values=value)
    # run-time paddings lose every static size; keep the channels, or Keras takes a slower conv path
    return tf.ensure_shape(padded_x, (None,) * (x.shape.rank - 1) + (x.shape[-1],))


def _crop_like(y, reference):
    """Crop the spatial axes of `y` to those of `reference` (both channels last)."""
    rank = reference.shape.rank
    begin = tf.zeros([rank], tf.int32)
    size = tf.concat([tf.shape(reference)[:-1], [-1]], 0)
    return tf.slice(y, begin, size)


def export_savedmodel(model, path, spec):
    """Write `model` with a preprocessing `serving_default` signature to `path` (atomically).

    Args:
        model: a Keras model mapping `(B, H, W, C)` images to per-class probabilities.
        path: the SavedModel directory to create (replaced if it exists).
        spec: a `ServingSpec`.

    Returns:
        `path`.
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    clean_stale_temporaries(parent)
    archive = keras.export.ExportArchive()
    archive.track(model)
    spatial_dims = len(model.input_shape) - 2
    if spec.image_size is not None and spatial_dims != 2:
        raise ConfigError("ServingSpec.image_size (resize to the training size) is for 2D models; "
                          "3D models are padded to the stride instead")
    signature = tf.TensorSpec((None,) * (spatial_dims + 1) + (spec.in_channels,), tf.float32, name="image")
    archive.add_endpoint(name="serving_default", fn=serving_function(model, spec), input_signature=[signature])
    staging = tempfile.mkdtemp(prefix=f".tmp-export-{os.getpid()}-", dir=parent)
    try:
        archive.write_out(staging, verbose=False)
        metadata_path = os.path.join(staging, METADATA_FILE)
        os.makedirs(os.path.dirname(metadata_path), exist_ok=True)
        with open(metadata_path, "w") as stream:
            json.dump(spec.to_json(), stream, indent=2, default=list)
        replace_directory(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def read_metadata(path):
    """The preprocessing metadata stored beside an exported SavedModel (a dict)."""
    with open(os.path.join(path, METADATA_FILE)) as stream:
        return json.load(stream)


def replace_directory(new, target):
    old = None
    if os.path.exists(target):
        old = tempfile.mkdtemp(prefix=f".tmp-old-{os.getpid()}-", dir=os.path.dirname(target))
        os.rmdir(old)
        os.replace(target, old)
    os.replace(new, target)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def serving_callable(model, spec):
    """`fn(numpy batch) -> {"probabilities", "labels"}` through the exported signature's own function.

    Evaluating and predicting through it means the reported figures are those a served model gets.

    Args:
        model: the Keras model to wrap.
        spec: the `ServingSpec` of its SavedModel.

    Returns:
        A function of a float32 numpy batch returning numpy arrays.
    """
    import tensorflow as tf

    fn = tf.function(serving_function(model, spec))
    return lambda image: {k: v.numpy() for k, v in fn(tf.constant(image, tf.float32)).items()}
