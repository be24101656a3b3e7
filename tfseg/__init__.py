"""tfseg: medical image segmentation in TensorFlow/Keras 3.

Importing `tfseg` is light: it does not import TensorFlow. Import the stage you need, e.g.
`from tfseg.models import fcn8s` or `from tfseg.io import dicom`.

A `.keras` file written by tfseg loads with `tfseg.load_model(path)`, or with plain
`keras.saving.load_model(path)` once `tfseg` is imported: importing tfseg makes Keras register
tfseg's layers, losses and metrics as soon as Keras itself is imported (`tfseg.saving`).
"""
__version__ = "0.1.0"

from tfseg.errors import ConfigError, DataError, TfsegError  # noqa: F401  (light, no TensorFlow)
from tfseg.saving import install_keras_hook as _install_keras_hook
from tfseg.saving import load_model, register_custom_objects  # noqa: F401  (TensorFlow imported when called)

_install_keras_hook()
