"""Pretrained weights for tfseg models: files matched by layer name, ImageNet VGG16, Caffe AlexNet.

Every loader raises `DataError` naming the file when it cannot be used, and logs which layers of
the model were loaded and which kept their initial values.

Formats:

- `.weights.h5`: saved with `model.save_weights` from the same builder and arguments; loaded
  exactly with `model.load_weights`.
- `.keras`: a whole saved model; its weights are copied into layers of the same name and shape,
  the others are left as initialized and listed in the log (e.g. the class-score layers when the
  number of classes changed: the usual transfer-learning case).
- `.h5` / `.hdf5`: a legacy (Keras 2) weights or model file, copied by layer name the same way
  (the `keras.applications` ImageNet files are in this format).
- `.npy`: a Caffe model converted to a pickled dict `{layer: [W, b]}` (or `{layer: {"weights": W,
  "biases": b}}`), conv `W` as `(kh, kw, in / groups, out)` and fully connected `W` as
  `(inputs, out)`, such as the widely used `bvlc_alexnet.npy`. Fully connected layers are
  "convolutionalized": `W` is reshaped to the model's `(kh, kw, in, out)` kernel, which assumes
  the rows are flattened in `(h, w, c)` order, as the TensorFlow conversions (which flatten a
  channels-last pool5) produce. The file is unpickled: load only files you trust.

Input channels: when the first convolution of the model sees a different number of channels than
the pretrained one (3, RGB/BGR), its kernel is adapted as timm's `adapt_input_conv` does: for one
channel the kernel is summed over the 3 colour channels (the response to a gray image copied to
3 channels); for `C` channels the colour kernels are repeated cyclically and scaled by `3 / C`.

Example:
    >>> import numpy as np
    >>> adapt_input_kernel(np.ones((3, 3, 3, 8)), 1).shape
    (3, 3, 1, 8)
"""
import logging
import os
import pickle
import zipfile

import h5py
import keras
import numpy as np

from tfseg.errors import DataError

logger = logging.getLogger(__name__)

VGG16_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG16_NOTOP_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
                   "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
VGG16_NOTOP_HASH = "6d6bbae143d832006294945121d1f1fc"  # the md5 keras.applications.VGG16 checks

WEIGHT_FILE_SUFFIXES = (".weights.h5", ".keras", ".h5", ".hdf5", ".npy")


def adapt_input_kernel(kernel, in_channels):
    """Adapt a first-layer kernel `(*k, c_src, out)` to `in_channels` input channels.

    Args:
        kernel: numpy array whose second-to-last axis is the input-channel axis.
        in_channels: the channel count of the new input.

    Returns:
        The kernel unchanged if the counts agree; summed over the input channels for 1 channel;
        otherwise repeated cyclically along the input axis and scaled by `c_src / in_channels`.

    Example:
        >>> import numpy as np
        >>> k = np.arange(6, dtype="float32").reshape(1, 1, 3, 2)
        >>> adapt_input_kernel(k, 1)[0, 0].tolist()
        [[6.0, 9.0]]
    """
    kernel = np.asarray(kernel)
    source = kernel.shape[-2]
    if in_channels == source:
        return kernel
    if in_channels == 1:
        return kernel.sum(axis=-2, keepdims=True)
    repeats = -(-in_channels // source)
    tiled = np.concatenate([kernel] * repeats, axis=-2)[..., :in_channels, :]
    return tiled * (source / in_channels)


def named_layer_weights(model):
    """`{layer name: [arrays]}` for every layer with weights, looking inside nested models."""
    named = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            for name, arrays in named_layer_weights(layer).items():
                named.setdefault(name, arrays)
        elif layer.weights:
            named.setdefault(layer.name, [np.asarray(w) for w in layer.get_weights()])
    return named


def _check_exists(path):
    if not os.path.exists(path):
        raise DataError(path, "weights file does not exist")
    if os.path.isdir(path):
        raise DataError(path, "is a folder, expected a weights file "
                              f"({', '.join(WEIGHT_FILE_SUFFIXES)})")


def read_keras_file(path):
    """The layer weights stored in a `.keras` model file, by layer name.

    Raises:
        DataError: if the file is missing or is not a loadable Keras model.
    """
    path = os.fspath(path)
    _check_exists(path)
    try:
        model = keras.saving.load_model(path, compile=False)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as error:
        raise DataError(path, f"cannot load this .keras model file: {error}") from error
    return named_layer_weights(model)


def read_legacy_h5(path):
    """The layer weights in a legacy (Keras 2) `.h5` weights or model file, by layer name.

    Raises:
        DataError: if the file is missing, not HDF5, or not in the Keras layout.
    """
    path = os.fspath(path)
    _check_exists(path)
    try:
        with h5py.File(path, "r") as f:
            group = f
            if "layer_names" not in f.attrs and "model_weights" in f:
                group = f["model_weights"]
            if "layer_names" not in group.attrs:
                raise DataError(path, "not a legacy Keras HDF5 weights file (no 'layer_names' attribute); "
                                      "Keras 3 weight files must be named *.weights.h5")
            named = {}
            for layer_name in group.attrs["layer_names"]:
                layer_name = _text(layer_name)
                layer_group = group[layer_name]
                names = [_text(n) for n in layer_group.attrs.get("weight_names", [])]
                if names:
                    named[layer_name] = [np.asarray(layer_group[n]) for n in names]
            return named
    except OSError as error:
        raise DataError(path, f"cannot read as HDF5: {error}") from error


def _text(value):
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def read_caffe_npy(path):
    """The layers of a Caffe-converted `.npy` weights dict, as `{layer: [W, b]}` float32 arrays.

    Args:
        path: a pickled dict `{layer: [W, b]}` or `{layer: {"weights": W, "biases": b}}` saved
            with `np.save`, e.g. `bvlc_alexnet.npy`.

    Returns:
        A dict of lists of numpy arrays.

    Raises:
        DataError: if the file is missing or does not hold such a dict.
    """
    path = os.fspath(path)
    _check_exists(path)
    try:
        raw = np.load(path, allow_pickle=True, encoding="latin1")
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as error:
        raise DataError(path, f"cannot read as a numpy .npy file: {error}") from error
    if isinstance(raw, np.ndarray) and raw.dtype == object and raw.shape == ():
        raw = raw.item()
    if not isinstance(raw, dict):
        raise DataError(path, "expected a pickled dict {layer_name: [W, b]} (a Caffe-to-TensorFlow conversion such "
                              f"as bvlc_alexnet.npy), found {type(raw).__name__}")
    named = {}
    for name, value in raw.items():
        if isinstance(value, dict):
            value = [value[key] for key in ("weights", "biases") if key in value]
        if not isinstance(value, (list, tuple)) or not value:
            raise DataError(path, f"layer {name!r}: expected [W, b], found {type(value).__name__}")
        try:
            named[_text(name)] = [np.asarray(array, dtype="float32") for array in value]
        except (TypeError, ValueError) as error:
            raise DataError(path, f"layer {name!r}: weights are not numeric arrays ({error})") from error
    return named


def _input_layer_names(model):
    """Names of the layers with weights that read a model input directly (the first convolutions)."""
    names = set()
    for layer in model.layers:
        if not layer.weights or isinstance(layer, keras.Model):
            continue
        try:
            inputs = keras.tree.flatten(layer.input)
        except (AttributeError, ValueError):
            continue
        if any(any(t is model_input for model_input in model.inputs) for t in inputs):
            names.add(layer.name)
    return names


def _fit(arrays, targets, is_input_layer):
    """Fit source arrays to the target weight shapes, or return a reason why they do not fit."""
    if len(arrays) != len(targets):
        return None, f"{len(arrays)} arrays in the file, {len(targets)} weights in the model"
    fitted = []
    for index, (array, target) in enumerate(zip(arrays, targets)):
        shape = tuple(target.shape)
        if array.shape != shape and array.ndim == 2 and len(shape) > 2 \
                and array.shape == (int(np.prod(shape[:-1])), shape[-1]):
            array = array.reshape(shape)  # a fully connected layer, convolutionalized
        if array.shape != shape and index == 0 and is_input_layer and array.ndim == len(shape) \
                and array.shape[:-2] == shape[:-2] and array.shape[-1] == shape[-1]:
            array = adapt_input_kernel(array, shape[-2])
        if array.shape != shape:
            return None, f"file shape {array.shape}, model shape {shape}"
        fitted.append(array.astype(target.dtype, copy=False))
    return fitted, None


def assign_by_name(model, named, source, *, required=None):
    """Copy weights into the layers of `model` that have the same name and fitting shapes.

    Fully connected weights are reshaped into convolution kernels and the first convolution is
    adapted to the model's input channels (see the module docstring).

    Args:
        model: the target `keras.Model`.
        named: `{layer name: [arrays]}` from one of the readers.
        source: the file they came from (for messages).
        required: layer names that must all be present and fit; a missing or mismatched one raises.
            Other layers that do not fit are skipped and logged.

    Returns:
        `(loaded, not_loaded)`: lists of model layer names.

    Raises:
        DataError: naming the file, the layer and both shapes for a required layer that does
            not fit, or when no layer at all could be loaded.
    """
    targets = {}
    for layer in model.layers:
        if layer.weights and not isinstance(layer, keras.Model):
            targets[layer.name] = layer
    required = list(required or ())
    for name in required:
        if name not in named:
            raise DataError(source, f"has no weights for layer {name!r}; it holds: {', '.join(sorted(named))}")
        if name not in targets:
            raise DataError(source, f"layer {name!r} is not a layer with weights of model {model.name!r}")
    input_layers = _input_layer_names(model)
    loaded, not_loaded = [], []
    for name, layer in targets.items():
        if name not in named:
            not_loaded.append(name)
            continue
        fitted, reason = _fit(named[name], layer.weights, name in input_layers)
        if fitted is None:
            if name in required:
                raise DataError(source, f"layer {name!r} does not fit model {model.name!r}: {reason}")
            logger.warning("%s: layer %r not loaded, %s", source, name, reason)
            not_loaded.append(name)
            continue
        layer.set_weights(fitted)
        loaded.append(name)
    if not loaded:
        raise DataError(source, f"no layer of model {model.name!r} matches a layer of this file by name and shape "
                                f"(file layers: {', '.join(sorted(named)) or 'none'})")
    unused = sorted(set(named) - set(targets))
    logger.info("%s: loaded %d layer(s) into %s%s%s", source, len(loaded), model.name,
                f"; kept initial weights for {', '.join(not_loaded)}" if not_loaded else "",
                f"; file layers not in the model: {', '.join(unused)}" if unused else "")
    return loaded, not_loaded


def load_weights_file(model, path, *, npy_layers=None):
    """Load a weights file into `model` by its format (see the module docstring).

    Args:
        model: the target `keras.Model`.
        path: a `.weights.h5`, `.keras`, `.h5`/`.hdf5` or, when `npy_layers` is given, `.npy` file.
        npy_layers: the layer names a Caffe `.npy` file must provide (all must fit); None means
            this model does not take `.npy` files.

    Returns:
        `(loaded, not_loaded)` layer names (all layers for `.weights.h5`).

    Raises:
        DataError: naming the file for a missing file, an unknown format or weights that do not fit.

    Example:
        >>> import os, tempfile
        >>> from tfseg.models import fcn8s
        >>> a = fcn8s((64, 64, 1), width=0.125, fc_units=8)
        >>> path = os.path.join(tempfile.mkdtemp(), "a.weights.h5")
        >>> a.save_weights(path)
        >>> b = fcn8s((64, 64, 1), width=0.125, fc_units=8)
        >>> loaded, not_loaded = load_weights_file(b, path)
        >>> not_loaded
        []
    """
    path = os.fspath(path)
    _check_exists(path)
    lower = path.lower()
    if lower.endswith(".weights.h5"):
        try:
            model.load_weights(path)
        except (ValueError, OSError, KeyError) as error:
            detail = " ".join(str(error).split(" Target variable:")[0].split())
            raise DataError(path, f"does not match model {model.name!r} (a .weights.h5 file must come from the "
                                  f"same builder with the same arguments; use a .keras file to copy by layer "
                                  f"name): {detail}") from error
        names = [layer.name for layer in model.layers if layer.weights]
        logger.info("%s: loaded all %d layers with weights into %s", path, len(names), model.name)
        return names, []
    if lower.endswith(".keras"):
        return assign_by_name(model, read_keras_file(path), path)
    if lower.endswith((".h5", ".hdf5")):
        return assign_by_name(model, read_legacy_h5(path), path)
    if lower.endswith(".npy"):
        if npy_layers is None:
            raise DataError(path, f"model {model.name!r} does not load Caffe .npy weights; "
                                  "use a .weights.h5, .keras or .h5 file")
        return assign_by_name(model, read_caffe_npy(path), path, required=npy_layers)
    raise DataError(path, f"unknown weights format; expected one of {', '.join(WEIGHT_FILE_SUFFIXES)}")


def vgg16_imagenet_weights():
    """The ImageNet weights of the 13 VGG16 convolutions, `{"block1_conv1": [kernel, bias], ...}`.

    The file is the one `keras.applications.VGG16(include_top=False, weights="imagenet")` uses,
    fetched with `keras.utils.get_file` into `$KERAS_HOME/models` (default `~/.keras/models`),
    where a copy placed by hand is used without network access.

    Returns:
        A dict of `[kernel, bias]` numpy arrays by keras.applications layer name.

    Raises:
        DataError: if the file cannot be fetched or read.
    """
    try:
        path = keras.utils.get_file(VGG16_NOTOP_FILE, VGG16_NOTOP_URL, cache_subdir="models",
                                    file_hash=VGG16_NOTOP_HASH)
    except Exception as error:  # get_file raises bare Exception on network errors
        raise DataError(VGG16_NOTOP_URL, f"could not fetch the ImageNet VGG16 weights ({error}); without network "
                                         f"access, copy {VGG16_NOTOP_FILE} into ~/.keras/models/") from error
    try:
        vgg = keras.applications.VGG16(include_top=False, weights=path)
    except (ValueError, OSError, KeyError) as error:
        raise DataError(path, f"cannot load as the keras.applications VGG16 weights: {error}") from error
    return named_layer_weights(vgg)
