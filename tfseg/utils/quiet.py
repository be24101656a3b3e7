"""Quiet TensorFlow's start-up noise (C++ log lines, absl warnings) unless the user asks for it.

Call `quiet_tensorflow()` before TensorFlow is imported (the CLI and the recipes do). Setting
`TF_CPP_MIN_LOG_LEVEL` yourself, or `TFSEG_VERBOSE_TF=1`, keeps TensorFlow's own logging.

Example:
    >>> import os
    >>> quiet_tensorflow(environ={"TFSEG_VERBOSE_TF": "1"})
    False
"""
import logging
import os


def quiet_tensorflow(environ=None):
    """Silence TensorFlow's C++ and absl logging below errors; returns whether anything was changed.

    Args:
        environ: the environment to change (default `os.environ`).
    """
    environ = os.environ if environ is None else environ
    if environ.get("TFSEG_VERBOSE_TF") == "1" or "TF_CPP_MIN_LOG_LEVEL" in environ:
        return False
    environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    return True
