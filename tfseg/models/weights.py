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
- `.npz`: a Caffe model converted to plain arrays, one per key `"<layer>/0"` (W) and
  `"<layer>/1"` (b) (`"<layer>/weights"`/`"<layer>/biases"` are read too), conv `W` as
  `(kh, kw, in / groups, out)` and fully connected `W` as `(inputs, out)`. Fully connected layers
  are "convolutionalized": `W` is reshaped to the model's `(kh, kw, in, out)` kernel, which
  assumes the rows are flattened in `(h, w, c)` order, as the TensorFlow conversions (which
  flatten a channels-last pool5) produce. It is read with `allow_pickle=False`: nothing in it
  can run code.
- `.npy`: the widely shared `bvlc_alexnet.npy` is a *pickled* dict `{layer: [W, b]}`, and
  unpickling a file runs code it contains, so tfseg refuses it (a `DataError` saying how to
  convert it). Convert a file you trust once with `save_caffe_npz` (see its docstring) and pass
  the `.npz`.

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
import zipfile

import h5py
import keras
import numpy as np

from tfseg.errors import ConfigError, DataError, shorten
from tfseg.utils.atomic import atomic_path

logger = logging.getLogger(__name__)

VGG16_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG16_NOTOP_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
                   "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
VGG16_NOTOP_HASH = "6d6bbae143d832006294945121d1f1fc"  # the md5 keras.applications.VGG16 checks

WEIGHT_FILE_SUFFIXES = (".weights.h5", ".keras", ".h5", ".hdf5", ".npz")
_CAFFE_KEYS = {"0": 0, "1": 1, "weights": 0, "biases": 1}


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


def _convert_hint(path):
    npz = os.path.splitext(os.path.basename(path))[0] + ".npz"
    return ("convert it once, in a Python session you trust with this file: `import numpy as np; "
            "from tfseg.models.weights import save_caffe_npz; "
            f"save_caffe_npz('{npz}', np.load('{os.path.basename(path)}', allow_pickle=True, "
            f"encoding='latin1').item())`, then pass {npz}")


def read_caffe_npz(path):
    """The layers of a Caffe-converted `.npz` weights file, as `{layer: [W, b]}` float32 arrays.

    The file is read with `allow_pickle=False`, so it can only hold plain arrays.

    Args:
        path: an `.npz` with one array per key `"<layer>/0"` (W) and `"<layer>/1"` (b), as
            `save_caffe_npz` writes (`"<layer>/weights"` and `"<layer>/biases"` are read too).

    Returns:
        A dict of lists of numpy arrays, `[W, b]` (or `[W]` for a layer without bias).

    Raises:
        DataError: if the file is missing, not an `.npz` of plain numeric arrays, or a key is not
            `<layer>/<0|1|weights|biases>`.

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> path = save_caffe_npz(os.path.join(tempfile.mkdtemp(), "a.npz"),
        ...                       {"conv1": [np.ones((1, 1, 3, 2)), np.zeros(2)]})
        >>> [a.shape for a in read_caffe_npz(path)["conv1"]]
        [(1, 1, 3, 2), (2,)]
    """
    path = os.fspath(path)
    _check_exists(path)
    named = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise DataError(path, "holds a single array, not an .npz archive of layers "
                                      "{'<layer>/0': W, '<layer>/1': b}")
            for key in archive.files:
                layer, _, which = key.rpartition("/")
                if not layer or which not in _CAFFE_KEYS:
                    raise DataError(path, f"key {shorten(key)!r} is not '<layer>/0' (W) or '<layer>/1' (b)")
                array = archive[key]
                if array.dtype.kind not in "biuf":
                    raise DataError(path, f"{shorten(key)!r}: weights are not numeric ({array.dtype})")
                named.setdefault(layer, {})[_CAFFE_KEYS[which]] = array.astype("float32")
    except DataError:
        raise
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise DataError(path, "holds pickled Python objects, which tfseg does not load (unpickling "
                                  "runs code from the file); store plain arrays with save_caffe_npz"
                            ) from None
        raise DataError(path, f"cannot read as a numpy .npz file: {error}") from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise DataError(path, f"cannot read as a numpy .npz file: {type(error).__name__}: {error}") from None
    if not named:
        raise DataError(path, "holds no arrays")
    result = {}
    for layer, arrays in named.items():
        if sorted(arrays) not in ([0], [0, 1]):
            raise DataError(path, f"layer {shorten(layer)!r}: a bias without weights")
        result[layer] = [arrays[index] for index in sorted(arrays)]
    return result


def refuse_caffe_npy(path):
    """Raise the `DataError` that explains why a Caffe `.npy` file is not loaded, and how to convert it.

    A plain numeric `.npy` array is not a weights file either; neither case unpickles anything.

    Raises:
        DataError: always, naming the file.
    """
    path = os.fspath(path)
    _check_exists(path)
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(handle)
    except (ValueError, OSError, EOFError) as error:
        raise DataError(path, f"not a numpy .npy file ({type(error).__name__}: {shorten(error)})") from None
    if dtype.hasobject:
        raise DataError(path, "is a pickled Caffe weights dict; tfseg never unpickles a file (that would "
                              f"run code from it); {_convert_hint(path)}")
    raise DataError(path, f"holds one {dtype} array of shape {shape}, not a dict of layer weights; "
                          "pretrained Caffe weights are read from an .npz archive (save_caffe_npz)")


def save_caffe_npz(path, named):
    """Write Caffe-converted layer weights `{layer: [W, b]}` as an `.npz` of plain arrays, atomically.

    Args:
        path: the output file, ending in `.npz`.
        named: `{layer: [W, b]}` or `{layer: {"weights": W, "biases": b}}` (the two layouts of the
            converted `bvlc_alexnet.npy`), numeric arrays.

    Returns:
        `path`, as given.

    Raises:
        ConfigError: the path does not end in `.npz` or `named` is not such a dict.

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> out = save_caffe_npz(os.path.join(tempfile.mkdtemp(), "w.npz"), {"fc7": {"weights": np.eye(2),
        ...                      "biases": np.zeros(2)}})
        >>> sorted(np.load(out).files)
        ['fc7/0', 'fc7/1']
    """
    if not os.fspath(path).endswith(".npz"):
        raise ConfigError(f"save_caffe_npz writes an .npz file, got {os.fspath(path)!r}")
    if not isinstance(named, dict):
        raise ConfigError(f"expected a dict {{layer: [W, b]}}, got {type(named).__name__}")
    arrays = {}
    for name, value in named.items():
        if isinstance(value, dict):
            value = [value[key] for key in ("weights", "biases") if key in value]
        if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= 2:
            raise ConfigError(f"layer {name!r}: expected [W, b], found {type(value).__name__}")
        for index, array in enumerate(value):
            try:
                arrays[f"{_text(name)}/{index}"] = np.asarray(array, dtype="float32")
            except (TypeError, ValueError) as error:
                raise ConfigError(f"layer {name!r}: weights are not numeric arrays ({error})") from None
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    return path


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


def load_weights_file(model, path, *, caffe_layers=None):
    """Load a weights file into `model` by its format (see the module docstring).

    Args:
        model: the target `keras.Model`.
        path: a `.weights.h5`, `.keras`, `.h5`/`.hdf5` or, when `caffe_layers` is given, a Caffe
            `.npz` file (a pickled `.npy` is refused with the way to convert it).
        caffe_layers: the layer names a Caffe `.npz` file must provide (all must fit); None means
            this model does not take Caffe weights.

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
    if lower.endswith((".npz", ".npy")):
        if caffe_layers is None:
            raise DataError(path, f"model {model.name!r} does not load Caffe weights; "
                                  "use a .weights.h5, .keras or .h5 file")
        if lower.endswith(".npy"):
            refuse_caffe_npy(path)
        return assign_by_name(model, read_caffe_npz(path), path, required=caffe_layers)
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
