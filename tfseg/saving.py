"""Load `.keras` files written by tfseg: its custom layers, losses and metrics registered first.

A `.keras` file names tfseg's own classes (`tfseg>GroupNormalization`-style registered names);
Keras can only rebuild them once the modules defining them have run. `import tfseg` arranges
that without importing TensorFlow itself: when Keras is imported (before or after tfseg), tfseg's
registering modules are imported too, so a plain `keras.saving.load_model(path)` works.
`load_model(path)` does the same explicitly and turns a missing, damaged or non-model file into
a one-line `DataError`.

Example:
    >>> import os, tempfile
    >>> load_model(os.path.join(tempfile.mkdtemp(), "model.keras"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tfseg.errors.DataError: ...model.keras: file not found
"""
import importlib
import importlib.abc
import importlib.util
import logging
import os
import sys
import zipfile

from tfseg.errors import DataError

logger = logging.getLogger(__name__)

#: The modules whose import registers tfseg's Keras-serializable classes.
REGISTERING_MODULES = ("tfseg.losses", "tfseg.metrics", "tfseg.models.layers", "tfseg.models.segresnet",
                       "tfseg.training.warmup")


def register_custom_objects():
    """Import the modules that register tfseg's Keras classes (layers, losses, metrics, schedules).

    Imports Keras (and TensorFlow); builds nothing.

    Example:
        >>> import keras
        >>> register_custom_objects()
        >>> keras.saving.get_registered_object("tfseg>DiceLoss") is not None
        True
    """
    for name in REGISTERING_MODULES:  # tfseg.training.warmup: the warm-up schedule of multi-process runs
        importlib.import_module(name)


def load_model(path, compile=False, **kwargs):
    """Load a `.keras` model written by tfseg (a recipe's `model.keras`, `best.keras`).

    Args:
        path: the `.keras` file.
        compile: also restore the training configuration (tfseg's trainer does not compile, so
            recipe files have none).
        **kwargs: passed to `keras.saving.load_model` (e.g. `safe_mode`).

    Returns:
        The `keras.Model`.

    Raises:
        DataError: the file is missing, is not a `.keras` archive, or Keras cannot rebuild it.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise DataError(path, "is a folder; expected a .keras model file")
    if not os.path.isfile(path):
        raise DataError(path, "file not found")
    if not zipfile.is_zipfile(path):
        raise DataError(path, "not a Keras model: a .keras file is a zip archive (config.json, model.weights.h5)")
    register_custom_objects()
    import keras

    try:
        return keras.saving.load_model(path, compile=compile, **kwargs)
    except Exception as error:  # Keras raises many types for archives it cannot rebuild
        text = str(error).strip().splitlines()
        raise DataError(path, f"cannot load the model ({type(error).__name__}: {text[0] if text else ''})") from None


def _register_quietly():
    try:
        register_custom_objects()
    except ImportError as error:  # e.g. while another tfseg module is half imported: load_model still works
        logger.debug("tfseg's Keras classes not registered on import of keras: %s", error)


class _AfterExec(importlib.abc.Loader):
    """Wraps the loader of `keras`: runs the real import, then registers tfseg's classes."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _register_quietly()

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _KerasImportHook(importlib.abc.MetaPathFinder):
    """Finds `keras` through the other finders and wraps its loader (once)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        remove_keras_hook()
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _AfterExec(spec.loader)
        return spec


_HOOK = _KerasImportHook()


def install_keras_hook():
    """Register tfseg's classes as soon as Keras is imported (now, if it already is)."""
    if "keras" in sys.modules:
        _register_quietly()
    elif _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)


def remove_keras_hook():
    """Stop waiting for Keras' import (`install_keras_hook` undone)."""
    while _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)
