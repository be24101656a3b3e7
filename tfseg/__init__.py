"""tfseg: medical image segmentation in TensorFlow/Keras 3.

Importing `tfseg` is light: it does not import TensorFlow. Import the stage you need, e.g.
`from tfseg.models import fcn8s` or `from tfseg.io import dicom`.
"""
__version__ = "0.1.0"

from tfseg.errors import ConfigError, DataError, TfsegError  # noqa: F401  (light, no TensorFlow)
